"""Dense layers: `linear`, `nn.Linear` on the last axis with `in_features` inferred.

It builds the named torch class, so the generic source road writes it (no emitter here).
"""

from __future__ import annotations

from pydantic import Field

from blocks.core.errors import ShapeError
from blocks.core.lazy import nn
from blocks.core.numbers import Size
from blocks.spec import counts
from blocks.spec.registry import Block, register_block
from blocks.spec.shapes import Shape


@register_block("linear")
class Linear(Block):
    """`nn.Linear` on the last axis; `in_features` is the input's last dimension."""

    example = ([64], {"type": "linear", "out_features": 10})

    out_features: Size = Field(description="output features (torch's out_features)")
    bias: bool = Field(True, description="learn an additive bias")

    def output_shape(self, shape: Shape) -> Shape:
        if not shape:
            raise ShapeError("expects at least one feature axis, got a scalar per sample")
        return (*shape[:-1], self.out_features)

    def build(self, shape: Shape) -> nn.Module:
        return nn.Linear(shape[-1], self.out_features, bias=self.bias)

    def parameter_count(self, shape: Shape) -> counts.Counts:
        return counts.linear(shape[-1], self.out_features, self.bias)
