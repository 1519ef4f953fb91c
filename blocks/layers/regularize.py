"""Per-sample regularisers of residual branches: `drop_path` (stochastic depth), `layer_scale`."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from blocks import counts
from blocks.catalogue import Probability
from blocks.errors import ShapeError
from blocks.registry import Block, register_block
from blocks.shapes import Shape, fmt_shape


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): zero a whole residual branch for a random subset
    of samples (`row`) or the whole batch (`batch`) and rescale the survivors; identity in eval.
    torch has no such module, so this is the paper's math in four lines."""

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


@register_block("drop_path")
class DropPathBlock(Block):
    """Stochastic depth on a residual branch (put it last in the branch): identity in eval."""

    p: Probability = Field(0.0, description="probability of dropping the branch in training")
    mode: Literal["row", "batch"] = Field(
        "row", description="row: per sample; batch: the whole batch at once")

    def output_shape(self, shape: Shape) -> Shape:
        return shape

    def build(self, shape: Shape) -> nn.Module:
        return DropPath(self.p, self.mode)

    def parameter_count(self, shape: Shape) -> counts.Counts:
        return counts.NOTHING


class LayerScale(nn.Module):
    """A learned per-channel scale (CaiT, ConvNeXt), shaped to broadcast over the other axes."""

    def __init__(self, shape: tuple[int, ...], init_value: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full(shape, float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


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
        return LayerScale((shape[axis],) + (1,) * (len(shape) - axis - 1), self.init_value)

    def parameter_count(self, shape: Shape) -> counts.Counts:
        return shape[self._axis(shape)], 0


