"""Convolutions: `conv1d` on `[channels, length]`, `conv2d` on `[channels, height, width]`,
`in_channels` inferred. Field names are torch's own argument names.

They build the named torch classes, so the generic source road writes them (no emitter here).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from blocks.core.errors import ShapeError
from blocks.core.lazy import nn
from blocks.core.numbers import Size
from blocks.layers.base import SPATIAL, IntOrList, PadOrList, as_tuple
from blocks.spec import counts
from blocks.spec.registry import Block, register_block
from blocks.spec.shapes import Shape, conv_output_length, expand, require_rank, same_padding


class ConvNd(Block):
    out_channels: Size = Field(description="output channels; in_channels is inferred")
    kernel_size: IntOrList = Field(description="window size, one number or one per spatial axis")
    stride: IntOrList = Field(1, description="step of the window, one number or one per axis")
    padding: PadOrList | Literal["same", "valid"] = Field(
        0, description="zeros added per side, or 'same' (output as long as input, stride 1) or 'valid'")
    dilation: IntOrList = Field(1, description="spacing between kernel elements")
    groups: Size = Field(1, description="split channels into groups (groups = channels: depthwise)")
    bias: bool = Field(True, description="learn an additive bias")
    padding_mode: Literal["zeros", "reflect", "replicate", "circular"] = Field(
        "zeros", description="what the padding holds")

    def _n(self) -> int:
        return 1 if self.type == "conv1d" else 2

    def output_shape(self, shape: Shape) -> Shape:
        n = self._n()
        require_rank(shape, n + 1, SPATIAL[n])
        channels, spatial = shape[0], shape[1:]
        for name, count in (("in_channels", channels), ("out_channels", self.out_channels)):
            if count % self.groups:
                raise ShapeError(f"{name} {count} is not divisible by groups {self.groups}")
        kernel = expand(self.kernel_size, n, "kernel_size")
        stride = expand(self.stride, n, "stride")
        dilation = expand(self.dilation, n, "dilation")
        if self.padding == "same":
            if any(s != 1 for s in stride):
                raise ShapeError("padding 'same' needs stride 1 (torch does not support strided 'same')")
            sides = [max(same_padding(k, d)) for k, d in zip(kernel, dilation, strict=True)]
            self._check_padding_mode(spatial, sides)
            return (self.out_channels, *spatial)
        padding = (0,) * n if self.padding == "valid" else expand(self.padding, n, "padding")
        self._check_padding_mode(spatial, padding)
        return (self.out_channels, *(
            conv_output_length(length, k, s, p, d)
            for length, k, s, p, d in zip(spatial, kernel, stride, padding, dilation, strict=True)
        ))

    def _check_padding_mode(self, spatial: Shape, padding: Shape | list[int]) -> None:
        """`reflect` pads with at most length - 1 values per side, `circular` with at most length."""
        if self.padding_mode not in ("reflect", "circular"):
            return
        for length, pad in zip(spatial, padding, strict=True):
            limit = length - 1 if self.padding_mode == "reflect" else length
            if pad > limit:
                raise ShapeError(f"padding {pad} with padding_mode {self.padding_mode!r} needs an "
                                 f"input of at least {pad + (self.padding_mode == 'reflect')} along "
                                 f"each padded axis, got {length}")

    def build(self, shape: Shape) -> nn.Module:
        conv = nn.Conv1d if self._n() == 1 else nn.Conv2d
        padding = self.padding if isinstance(self.padding, str) else as_tuple(self.padding)
        return conv(shape[0], self.out_channels, as_tuple(self.kernel_size),
                    stride=as_tuple(self.stride), padding=padding,
                    dilation=as_tuple(self.dilation), groups=self.groups, bias=self.bias,
                    padding_mode=self.padding_mode)

    def parameter_count(self, shape: Shape) -> counts.Counts:
        kernel = expand(self.kernel_size, self._n(), "kernel_size")
        return counts.conv(shape[0], self.out_channels, kernel, self.groups, self.bias)


_ConvNd = ConvNd  # its name in blocks.layers.catalogue, where it used to live


@register_block("conv1d")
class Conv1d(ConvNd):
    """`nn.Conv1d` on `[channels, length]`; `in_channels` is inferred."""

    example = ([4, 100], {"type": "conv1d", "out_channels": 8, "kernel_size": 5})


@register_block("conv2d")
class Conv2d(ConvNd):
    """`nn.Conv2d` on `[channels, height, width]`; `in_channels` is inferred."""

    example = ([1, 28, 28], {"type": "conv2d", "out_channels": 32, "kernel_size": 3})
