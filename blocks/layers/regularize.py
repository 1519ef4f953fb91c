"""Per-sample regularisers of residual branches: `drop_path` (stochastic depth), `layer_scale`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from blocks.core.errors import ShapeError
from blocks.core.lazy import LazyModule, moved_to, nn
from blocks.layers.catalogue import Probability
from blocks.spec import counts
from blocks.spec.registry import Block, register_block
from blocks.spec.shapes import Shape, fmt_shape

impl = LazyModule("blocks.layers.modules.regularize")  # the nn.Module classes, imported at the first build


@register_block("drop_path")
class DropPathBlock(Block):
    """Stochastic depth on a residual branch (put it last in the branch): identity in eval."""

    p: Probability = Field(0.0, description="probability of dropping the branch in training")
    mode: Literal["row", "batch"] = Field(
        "row", description="row: per sample; batch: the whole batch at once")

    def output_shape(self, shape: Shape) -> Shape:
        return shape

    def build(self, shape: Shape) -> nn.Module:
        return impl.DropPath(self.p, self.mode)

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
        return impl.LayerScale((shape[axis],) + (1,) * (len(shape) - axis - 1), self.init_value)

    def parameter_count(self, shape: Shape) -> counts.Counts:
        return shape[self._axis(shape)], 0


# the nn.Module classes moved to the torch side; old imports still find them
__getattr__ = moved_to("blocks.layers.modules.regularize", {'DropPath', 'LayerScale'}, __name__)
