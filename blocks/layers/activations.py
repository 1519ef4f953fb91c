"""Activations: elementwise functions inside the backbone (`relu`, `gelu`, `silu`, `tanh`,
`sigmoid_act`, `leaky_relu`, `hardswish`, `hardsigmoid`, `identity`) and `softmax_act`.

Each builds a named `torch.nn` class, so the generic source road writes it and no emitter is
needed; none holds parameters. Heads emit logits: these are for the backbone only.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from blocks.core.errors import ShapeError
from blocks.core.lazy import nn
from blocks.spec import counts
from blocks.spec.registry import Block, register_block
from blocks.spec.shapes import Shape, fmt_shape


class Elementwise(Block):
    """Activations: shape in equals shape out, nothing learned."""

    def output_shape(self, shape: Shape) -> Shape:
        return shape

    def parameter_count(self, shape: Shape) -> counts.Counts:
        return counts.NOTHING


_Elementwise = Elementwise  # its name in blocks.layers.catalogue, where it used to live


@register_block("relu")
class ReLU(Elementwise):
    """`nn.ReLU`: max(0, x), shape unchanged."""

    def build(self, shape: Shape) -> nn.Module:
        return nn.ReLU()


@register_block("gelu")
class GELU(Elementwise):
    """`nn.GELU` (transformers, ConvNeXt), shape unchanged."""

    approximate: Literal["none", "tanh"] = Field("none", description="'tanh': the faster "
                                                  "approximation")

    def build(self, shape: Shape) -> nn.Module:
        return nn.GELU(approximate=self.approximate)


@register_block("silu")
class SiLU(Elementwise):
    """`nn.SiLU` (swish, EfficientNet), shape unchanged."""

    def build(self, shape: Shape) -> nn.Module:
        return nn.SiLU()


@register_block("tanh")
class Tanh(Elementwise):
    """`nn.Tanh`, shape unchanged."""

    def build(self, shape: Shape) -> nn.Module:
        return nn.Tanh()


@register_block("sigmoid_act")
class SigmoidActivation(Elementwise):
    """A sigmoid *inside* the backbone (gates); heads emit logits and never need this."""

    def build(self, shape: Shape) -> nn.Module:
        return nn.Sigmoid()


@register_block("leaky_relu")
class LeakyReLU(Elementwise):
    """`nn.LeakyReLU`: x, or `negative_slope * x` below zero; shape unchanged."""

    negative_slope: float = Field(0.01, description="slope for negative inputs")

    def build(self, shape: Shape) -> nn.Module:
        return nn.LeakyReLU(self.negative_slope)


@register_block("identity")
class Identity(Elementwise):
    """`nn.Identity`: passes its input through (a placeholder, e.g. an empty shortcut)."""

    def build(self, shape: Shape) -> nn.Module:
        return nn.Identity()


@register_block("hardswish")
class Hardswish(Elementwise):
    """`nn.Hardswish` (MobileNetV3)."""

    def build(self, shape: Shape) -> nn.Module:
        return nn.Hardswish()


@register_block("hardsigmoid")
class Hardsigmoid(Elementwise):
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
