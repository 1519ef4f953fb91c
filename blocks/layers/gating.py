"""Channel gates: `squeeze_excite` (SENet, MobileNetV3, EfficientNet), with its module, source
emitter, helper class and example. The activations gates use (`hardswish`, `hardsigmoid`,
`sigmoid_act`, `softmax_act`) are in `blocks.layers.activations`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from blocks.core.errors import ShapeError
from blocks.core.lazy import nn
from blocks.core.pysource import call
from blocks.layers.base import module_getattr, torch_modules
from blocks.spec import counts
from blocks.spec.registry import Block, register_block
from blocks.spec.shapes import Shape, require_rank

SQUEEZE_EXCITE = '''
class SqueezeExcite(nn.Module):
    """Channel gating: global average -> 1x1 conv down -> activation -> 1x1 conv up ->
    gate, times the input (torchvision's SqueezeExcitation layout)."""

    def __init__(
        self, channels: int, squeeze: int, activation: nn.Module, gate: nn.Module
    ) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = activation
        self.scale_activation = gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return self.scale_activation(scale) * x
'''


@torch_modules("SqueezeExcitation", "ACTIVATIONS")
def modules(torch, nn):  # defined on first build: importing this file needs no torch
    activations: dict[str, type[nn.Module]] = {
        "relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU, "hardswish": nn.Hardswish,
        "sigmoid": nn.Sigmoid, "hardsigmoid": nn.Hardsigmoid, "tanh": nn.Tanh,
        "identity": nn.Identity,
    }

    class SqueezeExcitation(nn.Module):
        """Global average -> 1x1 conv down -> activation -> 1x1 conv up -> gate, times the input.

        Submodule names and order are torchvision's (`fc1`, `fc2`), so weights line up."""

        def __init__(self, channels: int, squeeze: int, activation: str, gate: str) -> None:
            super().__init__()
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc1 = nn.Conv2d(channels, squeeze, 1)
            self.fc2 = nn.Conv2d(squeeze, channels, 1)
            self.activation = activations[activation]()
            self.scale_activation = activations[gate]()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
            return scale * x

        def emit_source(self, writer, path: str):
            name = writer.helper("SqueezeExcite", SQUEEZE_EXCITE)
            activation = writer.construct(self.activation, f"{path}.activation")
            gate = writer.construct(self.scale_activation, f"{path}.scale_activation")
            expression = call(name, [str(self.fc1.in_channels), str(self.fc1.out_channels),
                                     activation, gate])
            return writer.checked(self, expression, path)

    return {"SqueezeExcitation": SqueezeExcitation, "ACTIVATIONS": activations}


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

    example = ([72, 16, 16], {"type": "squeeze_excite", "ratio": 4, "divisor": 8})

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
        return modules().SqueezeExcitation(shape[0], self.squeeze(shape[0]), self.activation, self.gate)

    def parameter_count(self, shape: Shape) -> counts.Counts | None:
        squeeze = self.squeeze(shape[0])  # fc1 and fc2: 1x1 convolutions with biases
        return counts.total((counts.conv(shape[0], squeeze, (1, 1)),
                             counts.conv(squeeze, shape[0], (1, 1))))


EXAMPLE_RECIPES: dict[str, tuple[str, str]] = {  # title -> (what it shows, recipe)
    "squeeze_excite, hardswish, hardsigmoid": (
        "MobileNetV3's gate: a quarter of the channels, rounded to a multiple of 8.", """\
model:
  input: {shape: [3, 32, 32]}
  backbone:
    - {type: conv2d, out_channels: 72, kernel_size: 3, padding: 1}
    - hardswish
    - {type: squeeze_excite, ratio: 4, divisor: 8, gate: hardsigmoid}
    - global_avgpool
  head: {type: softmax, classes: 10}
"""),
}

# the activations moved to blocks.layers.activations; old imports still find them
__getattr__ = module_getattr(__name__, modules, moved={
    name: "blocks.layers.activations" for name in ("Hardswish", "Hardsigmoid", "SoftmaxActivation")
})
