"""Axis plumbing: `flatten`, `permute`, `reshape`, `unflatten`. Nothing learned; the
`Permute` and `Reshape` modules, their source emitters and helper classes live here.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import Field, field_validator

from blocks.core.errors import ShapeError
from blocks.core.lazy import nn
from blocks.core.numbers import NonNegativeSize
from blocks.core.pysource import literal
from blocks.layers.base import module_getattr, torch_modules
from blocks.spec import counts
from blocks.spec.registry import Block, register_block
from blocks.spec.shapes import Shape, fmt_shape

PERMUTE = '''
class Permute(nn.Module):
    """`x.permute(dims)`; `dims` start with the batch axis, 0."""

    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        self.dims = list(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(self.dims)
'''

RESHAPE = '''
class Reshape(nn.Module):
    """Reshape each sample: [batch, ...] -> [batch, *shape]."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)
'''


@torch_modules("Permute", "Reshape")
def modules(torch, nn):  # defined on first build: importing this file needs no torch
    class Permute(nn.Module):
        """`x.permute(0, *dims)`: reorders the per-sample axes, batch first and untouched."""

        def __init__(self, dims: list[int]) -> None:
            super().__init__()
            self.dims = [0, *(d + 1 for d in dims)]

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.permute(self.dims)

        def extra_repr(self) -> str:
            return f"dims={self.dims[1:]}"

        def emit_source(self, writer, path: str):
            name = writer.helper("Permute", PERMUTE)
            return writer.checked(self, f"{name}({literal(list(self.dims), path)})", path)

    class Reshape(nn.Module):
        """`x.reshape(batch, *shape)`."""

        def __init__(self, shape: tuple[int, ...]) -> None:
            super().__init__()
            self.shape = shape

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.reshape(x.shape[0], *self.shape)

        def extra_repr(self) -> str:
            return f"shape={list(self.shape)}"

        def emit_source(self, writer, path: str):
            name = writer.helper("Reshape", RESHAPE)
            return writer.checked(self, f"{name}({literal(tuple(self.shape), path)})", path)

    return {"Permute": Permute, "Reshape": Reshape}


def _axis(axis: int, shape: Shape, field: str) -> int:
    """A per-sample axis (negative counts from the end) as a non-negative index, or a ShapeError."""
    if not -len(shape) <= axis < len(shape):
        raise ShapeError(f"{field} {axis} is out of range for input {fmt_shape(shape)} "
                         f"(valid: {-len(shape)} to {len(shape) - 1})")
    return axis % len(shape)


@register_block("flatten")
class Flatten(Block):
    """Flatten every per-sample axis from `start_dim` on (0 = all of them), like `x.flatten(1)`."""

    start_dim: NonNegativeSize = Field(0, description="first per-sample axis to flatten")

    def output_shape(self, shape: Shape) -> Shape:
        if not shape:
            raise ShapeError("has nothing to flatten: the input is a scalar per sample")
        if self.start_dim >= len(shape):
            raise ShapeError(f"start_dim {self.start_dim} is out of range for input {fmt_shape(shape)}")
        return (*shape[: self.start_dim], math.prod(shape[self.start_dim:]))

    def build(self, shape: Shape) -> nn.Module:
        return nn.Flatten(start_dim=self.start_dim + 1)

    def parameter_count(self, shape: Shape) -> counts.Counts:
        return counts.NOTHING


@register_block("permute")
class PermuteBlock(Block):
    """Reorder the per-sample axes: `dims: [1, 2, 0]` takes `[C, H, W]` to `[H, W, C]`."""

    example = ([3, 32, 32], {"type": "permute", "dims": [1, 2, 0]})

    dims: Annotated[list[int], Field(min_length=1)] = Field(
        description="the new order of the per-sample axes (a permutation of 0..rank-1)")

    @field_validator("dims")
    @classmethod
    def _a_permutation(cls, dims: list[int]) -> list[int]:
        if sorted(dims) != list(range(len(dims))):
            raise ValueError(f"dims must be a permutation of 0..{len(dims) - 1}, got {dims}")
        return dims

    def output_shape(self, shape: Shape) -> Shape:
        if len(self.dims) != len(shape):
            raise ShapeError(f"dims {self.dims} permute {len(self.dims)} axes but the input "
                             f"{fmt_shape(shape)} has {len(shape)}")
        return tuple(shape[d] for d in self.dims)

    def build(self, shape: Shape) -> nn.Module:
        return modules().Permute(self.dims)

    def parameter_count(self, shape: Shape) -> counts.Counts:
        return counts.NOTHING


def _resolve_sizes(sizes: list[int], total: int, what: str) -> tuple[int, ...]:
    """Fill in a single -1 so the sizes multiply to `total`, or say why they cannot."""
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if total % known:
            raise ShapeError(f"{what} {sizes}: {total} elements do not divide into parts of {known}")
        return tuple(total // known if s == -1 else s for s in sizes)
    if known != total:
        raise ShapeError(f"{what} {sizes} holds {known} elements but the input has {total}")
    return tuple(sizes)


def _check_sizes(sizes: list[int]) -> list[int]:
    if any(s == 0 or s < -1 for s in sizes) or sizes.count(-1) > 1:
        raise ValueError(f"sizes must be positive, with at most one -1 (inferred), got {sizes}")
    return sizes


@register_block("reshape")
class ReshapeBlock(Block):
    """Reshape each sample to `shape` (one entry may be -1, inferred), e.g. `[768]` -> `[12, 64]`."""

    example = ([768], {"type": "reshape", "shape": [12, 64]})

    shape: Annotated[list[int], Field(min_length=1)] = Field(
        description="new per-sample shape; one entry may be -1 (inferred)")

    @field_validator("shape")
    @classmethod
    def _sizes(cls, shape: list[int]) -> list[int]:
        return _check_sizes(shape)

    def output_shape(self, shape: Shape) -> Shape:
        return _resolve_sizes(self.shape, math.prod(shape), "shape")

    def build(self, shape: Shape) -> nn.Module:
        return modules().Reshape(self.output_shape(shape))

    def parameter_count(self, shape: Shape) -> counts.Counts:
        return counts.NOTHING


@register_block("unflatten")
class UnflattenBlock(Block):
    """`nn.Unflatten` on per-sample axis `dim`: `[768, 196]` with `dim: 1, sizes: [14, 14]`."""

    example = ([768, 196], {"type": "unflatten", "dim": 1, "sizes": [14, 14]})

    dim: int = Field(description="per-sample axis to split")
    sizes: Annotated[list[int], Field(min_length=1)] = Field(
        description="sizes it splits into (their product is its length)")

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, sizes: list[int]) -> list[int]:
        return _check_sizes(sizes)

    def output_shape(self, shape: Shape) -> Shape:
        axis = _axis(self.dim, shape, "dim")
        sizes = _resolve_sizes(self.sizes, shape[axis], f"sizes for axis {axis} ({shape[axis]})")
        return (*shape[:axis], *sizes, *shape[axis + 1:])

    def build(self, shape: Shape) -> nn.Module:
        return nn.Unflatten(_axis(self.dim, shape, "dim") + 1, self.sizes)

    def parameter_count(self, shape: Shape) -> counts.Counts:
        return counts.NOTHING


EXAMPLE_RECIPES: dict[str, tuple[str, str]] = {  # title -> (what it shows, recipe)
    "reshape, unflatten, softmax_act": (
        "Axis plumbing: features to a grid and back; a softmax inside the backbone.", """\
model:
  input: {shape: [48]}
  backbone:
    - {type: reshape, shape: [3, -1]}
    - {type: unflatten, dim: 1, sizes: [4, 4]}
    - {type: softmax_act, dim: 0}
    - flatten
  head: {type: softmax, classes: 10}
"""),
}

# layernorm2d moved to blocks.layers.norm (it is a norm); old imports still find it
__getattr__ = module_getattr(__name__, modules, moved={"LayerNorm2d": "blocks.layers.norm",
                                                        "LayerNorm2dBlock": "blocks.layers.norm"})
