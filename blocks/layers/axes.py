"""Axis plumbing: `permute`, `reshape`, `unflatten`, and the channels-first `layernorm2d`."""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import Field, field_validator

from blocks.core.errors import ShapeError
from blocks.core.lazy import LazyModule, moved_to, nn
from blocks.spec import counts
from blocks.spec.registry import Block, register_block
from blocks.spec.shapes import Shape, fmt_shape

impl = LazyModule("blocks.layers.modules.axes")  # the nn.Module classes, imported at the first build


def _axis(axis: int, shape: Shape, field: str) -> int:
    """A per-sample axis (negative counts from the end) as a non-negative index, or a ShapeError."""
    if not -len(shape) <= axis < len(shape):
        raise ShapeError(f"{field} {axis} is out of range for input {fmt_shape(shape)} "
                         f"(valid: {-len(shape)} to {len(shape) - 1})")
    return axis % len(shape)


@register_block("permute")
class PermuteBlock(Block):
    """Reorder the per-sample axes: `dims: [1, 2, 0]` takes `[C, H, W]` to `[H, W, C]`."""

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
        return impl.Permute(self.dims)

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

    shape: Annotated[list[int], Field(min_length=1)] = Field(
        description="new per-sample shape; one entry may be -1 (inferred)")

    @field_validator("shape")
    @classmethod
    def _sizes(cls, shape: list[int]) -> list[int]:
        return _check_sizes(shape)

    def output_shape(self, shape: Shape) -> Shape:
        return _resolve_sizes(self.shape, math.prod(shape), "shape")

    def build(self, shape: Shape) -> nn.Module:
        return impl.Reshape(self.output_shape(shape))

    def parameter_count(self, shape: Shape) -> counts.Counts:
        return counts.NOTHING


@register_block("unflatten")
class UnflattenBlock(Block):
    """`nn.Unflatten` on per-sample axis `dim`: `[768, 196]` with `dim: 1, sizes: [14, 14]`."""

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


@register_block("layernorm2d")
class LayerNorm2dBlock(Block):
    """Layer norm over the channel axis of `[C, H, W]` (or `[C, L]`), each position on its own:
    ConvNeXt's `LayerNorm2d`, the same as `permute` -> `layernorm` -> `permute` back."""

    eps: Annotated[float, Field(gt=0)] = Field(1e-5, description="added to the variance")
    elementwise_affine: bool = Field(True, description="learn a per-channel scale (and shift)")
    bias: bool = Field(True, description="learn the shift too")

    def output_shape(self, shape: Shape) -> Shape:
        if len(shape) < 2:
            raise ShapeError(f"expects [channels, *spatial] per sample, got {fmt_shape(shape)}; "
                             "use `layernorm` on a feature vector")
        return shape

    def build(self, shape: Shape) -> nn.Module:
        return impl.LayerNorm2d(shape[0], eps=self.eps, elementwise_affine=self.elementwise_affine,
                           bias=self.bias)

    def parameter_count(self, shape: Shape) -> counts.Counts:
        return counts.layernorm(shape[0], self.elementwise_affine, self.bias)


# the nn.Module classes moved to the torch side; old imports still find them
__getattr__ = moved_to("blocks.layers.modules.axes", {'Permute', 'Reshape', 'LayerNorm2d'}, __name__)
