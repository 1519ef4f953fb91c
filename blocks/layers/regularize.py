"""Regularisers: `dropout` (`nn.Dropout`), and two for residual branches, `drop_path`
(stochastic depth) and `layer_scale` (a learned per-channel scale), whose modules, source
emitters and helper classes live here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from blocks.core.errors import ShapeError
from blocks.core.lazy import nn
from blocks.core.pysource import literal, number
from blocks.layers.base import Probability, module_getattr, torch_modules
from blocks.spec import counts
from blocks.spec.registry import Block, register_block
from blocks.spec.shapes import Shape, fmt_shape

DROP_PATH = '''
class DropPath(nn.Module):
    """Stochastic depth: in training, zero the whole branch for a random subset of
    samples ("row") or for the whole batch ("batch") and rescale the survivors;
    identity in eval."""

    def __init__(self, p: float, mode: str = "row") -> None:
        super().__init__()
        self.p = p
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        size = [x.shape[0]] + [1] * (x.ndim - 1) if self.mode == "row" else [1] * x.ndim
        mask = torch.empty(size, dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * mask.div_(keep)
'''

LAYER_SCALE = '''
class LayerScale(nn.Module):
    """A learned per-channel scale, broadcast over the axes after the channels."""

    def __init__(self, shape: tuple[int, ...], init_value: float = 1e-6) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full(shape, float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale
'''


@torch_modules("DropPath", "LayerScale")
def modules(torch, nn):  # defined on first build: importing this file needs no torch
    class DropPath(nn.Module):
        """Stochastic depth (Huang et al. 2016): zero a whole residual branch for a random subset
        of samples (`row`) or the whole batch (`batch`) and rescale the survivors; identity in
        eval. torch has no such module, so this is the paper's math in four lines."""

        def __init__(self, p: float, mode: str = "row") -> None:
            super().__init__()
            self.p = p
            self.mode = mode

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.training or self.p == 0.0:
                return x
            keep = 1.0 - self.p
            size = [x.shape[0]] + [1] * (x.ndim - 1) if self.mode == "row" else [1] * x.ndim
            mask = torch.empty(size, dtype=x.dtype, device=x.device).bernoulli_(keep)
            return x * mask.div_(keep)

        def extra_repr(self) -> str:
            return f"p={self.p}, mode={self.mode!r}"

        def emit_source(self, writer, path: str):
            name = writer.helper("DropPath", DROP_PATH)
            args = [literal(self.p, f"{path}.p")]
            if self.mode != "row":
                args.append(literal(self.mode, f"{path}.mode"))
            return writer.checked(self, f"{name}({', '.join(args)})", path)

    class LayerScale(nn.Module):
        """A learned per-channel scale (CaiT, ConvNeXt), shaped to broadcast over the other axes."""

        def __init__(self, shape: tuple[int, ...], init_value: float) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.full(shape, float(init_value)))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.scale

        def emit_source(self, writer, path: str):
            """The scale's initial value is written when every element still holds it (an
            untrained model); the weights file sets the learned values either way."""
            name = writer.helper("LayerScale", LAYER_SCALE)
            scale = self.scale.detach()
            args = [literal(tuple(scale.shape), f"{path}.scale")]
            if scale.numel() and not scale.is_meta and bool((scale == scale.flatten()[0]).all()):
                value = number(scale.flatten()[0])
                if value != 1e-6:
                    args.append(literal(value, f"{path}.scale"))
            return writer.checked(self, f"{name}({', '.join(args)})", path)

    return {"DropPath": DropPath, "LayerScale": LayerScale}


@register_block("dropout")
class Dropout(Block):
    """`nn.Dropout`: zero each element with probability `p` in training; identity in eval."""

    p: Probability = Field(0.5, description="probability of zeroing an element")

    def output_shape(self, shape: Shape) -> Shape:
        return shape

    def build(self, shape: Shape) -> nn.Module:
        return nn.Dropout(self.p)

    def parameter_count(self, shape: Shape) -> counts.Counts:
        return counts.NOTHING


@register_block("drop_path")
class DropPathBlock(Block):
    """Stochastic depth on a residual branch (put it last in the branch): identity in eval."""

    p: Probability = Field(0.0, description="probability of dropping the branch in training")
    mode: Literal["row", "batch"] = Field(
        "row", description="row: per sample; batch: the whole batch at once")

    def output_shape(self, shape: Shape) -> Shape:
        return shape

    def build(self, shape: Shape) -> nn.Module:
        return modules().DropPath(self.p, self.mode)

    def parameter_count(self, shape: Shape) -> counts.Counts:
        return counts.NOTHING


@register_block("layer_scale")
class LayerScaleBlock(Block):
    """Multiply each channel of per-sample `axis` by a learned scale, initialised to
    `init_value` (ConvNeXt: `1e-6` on the channels of `[C, H, W]`; `axis: -1` for tokens `[L, D]`)."""

    init_value: float = Field(1e-6, description="initial value of every scale")
    axis: int = Field(0, description="per-sample axis of the channels scaled")

    def _axis(self, shape: Shape) -> int:
        if not -len(shape) <= self.axis < len(shape):
            raise ShapeError(f"axis {self.axis} is out of range for input {fmt_shape(shape)}")
        return self.axis % len(shape)

    def output_shape(self, shape: Shape) -> Shape:
        self._axis(shape)
        return shape

    def build(self, shape: Shape) -> nn.Module:
        axis = self._axis(shape)
        return modules().LayerScale((shape[axis],) + (1,) * (len(shape) - axis - 1),
                                    self.init_value)

    def parameter_count(self, shape: Shape) -> counts.Counts:
        return shape[self._axis(shape)], 0


__getattr__ = module_getattr(__name__, modules)
