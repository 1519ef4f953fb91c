"""Gates and the activations they need: `squeeze_excite`, `hardswish`, `hardsigmoid`, `softmax_act`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from blocks.core.errors import ShapeError
from blocks.core.lazy import LazyModule, moved_to, nn
from blocks.layers.catalogue import _Elementwise
from blocks.spec import counts
from blocks.spec.registry import Block, register_block
from blocks.spec.shapes import Shape, fmt_shape, require_rank

impl = LazyModule("blocks.layers.modules.gating")  # the nn.Module classes, imported at the first build


@register_block("hardswish")
class Hardswish(_Elementwise):
    """`nn.Hardswish` (MobileNetV3)."""

    def build(self, shape: Shape) -> nn.Module:
        return nn.Hardswish()


@register_block("hardsigmoid")
class Hardsigmoid(_Elementwise):
    """`nn.Hardsigmoid`, a gate inside the backbone (MobileNetV3's squeeze-excite)."""

    def build(self, shape: Shape) -> nn.Module:
        return nn.Hardsigmoid()


@register_block("softmax_act")
class SoftmaxActivation(Block):
    """`nn.Softmax` *inside* the backbone (attention-style weights) over per-sample axis `dim`.
    Never before a head: heads emit logits and their loss applies the softmax."""

    dim: int = Field(-1, description="per-sample axis the softmax normalises over")

    def _axis(self, shape: Shape) -> int:
        if not -len(shape) <= self.dim < len(shape):
            raise ShapeError(f"dim {self.dim} is out of range for input {fmt_shape(shape)}")
        return self.dim % len(shape)

    def output_shape(self, shape: Shape) -> Shape:
        self._axis(shape)
        return shape

    def build(self, shape: Shape) -> nn.Module:
        return nn.Softmax(dim=self._axis(shape) + 1)

    def parameter_count(self, shape: Shape) -> counts.Counts:
        return counts.NOTHING


def make_divisible(value: float, divisor: int) -> int:
    """torchvision's channel rounding: the nearest multiple of `divisor`, never below
    `divisor` and never more than 10% below `value`."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


@register_block("squeeze_excite")
class SqueezeExcite(Block):
    """Channel gating on `[C, H, W]` (SENet, MobileNetV3, EfficientNet). The squeeze width is
    `squeeze_channels`, or `C // ratio` rounded to a multiple of `divisor` (torchvision's
    `_make_divisible`; MobileNetV3 uses `ratio: 4, divisor: 8`)."""

    squeeze_channels: PositiveInt | None = Field(
        None, description="width of the squeeze (or give ratio)")
    ratio: PositiveInt | None = Field(
        None, description="squeeze width = channels / ratio, rounded to a multiple of divisor")
    divisor: PositiveInt = Field(1, description="round the squeeze width to a multiple of this")
    activation: Literal["relu", "silu", "gelu", "hardswish"] = Field(
        "relu", description="activation after the squeeze")
    gate: Literal["sigmoid", "hardsigmoid"] = Field(
        "sigmoid", description="gate applied to the excitation")

    @model_validator(mode="after")
    def _one_width(self) -> SqueezeExcite:
        if (self.squeeze_channels is None) == (self.ratio is None):
            raise ValueError("give exactly one of `squeeze_channels` (a width) or `ratio` "
                             "(the width is channels // ratio)")
        return self

    def squeeze(self, channels: int) -> int:
        if self.squeeze_channels is not None:
            return self.squeeze_channels
        width = channels // self.ratio
        if width == 0:
            raise ShapeError(f"ratio {self.ratio} leaves no channels to squeeze into: "
                             f"{channels} // {self.ratio} = 0")
        return make_divisible(width, self.divisor)

    def output_shape(self, shape: Shape) -> Shape:
        require_rank(shape, 3, "channels, height, width")
        self.squeeze(shape[0])
        return shape

    def build(self, shape: Shape) -> nn.Module:
        return impl.SqueezeExcitation(shape[0], self.squeeze(shape[0]), self.activation, self.gate)

    def parameter_count(self, shape: Shape) -> counts.Counts | None:
        squeeze = self.squeeze(shape[0])  # fc1 and fc2: 1x1 convolutions with biases
        return counts.total((counts.conv(shape[0], squeeze, (1, 1)),
                             counts.conv(squeeze, shape[0], (1, 1))))


# the nn.Module classes moved to the torch side; old imports still find them
__getattr__ = moved_to("blocks.layers.modules.gating", {'SqueezeExcitation', 'ACTIVATIONS'}, __name__)
