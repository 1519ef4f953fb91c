"""Built-in block types. Field names are torch's own argument names, minus the inferred sizes."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field

from blocks.core.errors import ShapeError
from blocks.core.lazy import moved_to, nn
from blocks.core.numbers import Index, NonNegativeSize, Size
from blocks.spec import counts
from blocks.spec.registry import Block, register_block
from blocks.spec.shapes import (
    Shape,
    conv_output_length,
    expand,
    fmt_shape,
    require_rank,
    same_padding,
)

Probability = Annotated[float, Field(ge=0.0, lt=1.0)]
IntOrList = Size | list[Size]
PadOrList = NonNegativeSize | list[NonNegativeSize]

_SPATIAL = {1: "channels, length", 2: "channels, height, width"}


# --- dense ---------------------------------------------------------------------------------------
@register_block("linear")
class Linear(Block):
    """`nn.Linear` on the last axis; `in_features` is the input's last dimension."""

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


@register_block("embedding")
class Embedding(Block):
    """`nn.Embedding`: integer token ids `[L]` -> vectors `[L, embedding_dim]`."""

    num_embeddings: Size = Field(description="vocabulary size: token ids are 0..num_embeddings-1")
    embedding_dim: Size = Field(description="length of each token's vector")
    padding_idx: Index | None = Field(None, description="token id whose vector stays zero and "
                                      "gets no gradient")
    max_norm: float | None = Field(None, description="renormalise vectors longer than this")

    def output_shape(self, shape: Shape) -> Shape:
        if self.padding_idx is not None and not (
            -self.num_embeddings <= self.padding_idx < self.num_embeddings
        ):
            raise ShapeError(f"padding_idx {self.padding_idx} is outside [0, {self.num_embeddings})")
        return (*shape, self.embedding_dim)

    def build(self, shape: Shape) -> nn.Module:
        return nn.Embedding(self.num_embeddings, self.embedding_dim,
                            padding_idx=self.padding_idx, max_norm=self.max_norm)

    def parameter_count(self, shape: Shape) -> counts.Counts:
        return self.num_embeddings * self.embedding_dim, 0


# --- convolution ---------------------------------------------------------------------------------
class _ConvNd(Block):
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
        require_rank(shape, n + 1, _SPATIAL[n])
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
        padding = self.padding if isinstance(self.padding, str) else self.padding
        return conv(shape[0], self.out_channels, _tuple(self.kernel_size), stride=_tuple(self.stride),
                    padding=_tuple(padding) if not isinstance(padding, str) else padding,
                    dilation=_tuple(self.dilation), groups=self.groups, bias=self.bias,
                    padding_mode=self.padding_mode)

    def parameter_count(self, shape: Shape) -> counts.Counts:
        kernel = expand(self.kernel_size, self._n(), "kernel_size")
        return counts.conv(shape[0], self.out_channels, kernel, self.groups, self.bias)


def _tuple(value):
    return tuple(value) if isinstance(value, list) else value


@register_block("conv1d")
class Conv1d(_ConvNd):
    """`nn.Conv1d` on `[channels, length]`; `in_channels` is inferred."""


@register_block("conv2d")
class Conv2d(_ConvNd):
    """`nn.Conv2d` on `[channels, height, width]`; `in_channels` is inferred."""


# --- normalisation -------------------------------------------------------------------------------
class _BatchNorm(Block):
    eps: Annotated[float, Field(gt=0)] = Field(1e-5, description="added to the variance")
    momentum: Annotated[float, Field(ge=0, le=1)] | None = Field(
        0.1, description="running statistics' update rate (null: a cumulative average)")
    affine: bool = Field(True, description="learn a per-channel scale and shift")
    track_running_stats: bool = Field(True, description="keep running mean/variance for eval mode")

    def _ranks(self) -> tuple[int, ...]:
        return (1, 2) if self.type == "batchnorm1d" else (3,)

    def output_shape(self, shape: Shape) -> Shape:
        if len(shape) not in self._ranks():
            layout = "features] or [channels, length" if self.type == "batchnorm1d" else _SPATIAL[2]
            raise ShapeError(f"expects input [{layout}] per sample, got {fmt_shape(shape)}")
        return shape

    def build(self, shape: Shape) -> nn.Module:
        norm = nn.BatchNorm1d if self.type == "batchnorm1d" else nn.BatchNorm2d
        return norm(shape[0], eps=self.eps, momentum=self.momentum, affine=self.affine,
                    track_running_stats=self.track_running_stats)

    def parameter_count(self, shape: Shape) -> counts.Counts:
        return counts.batchnorm(shape[0], self.affine, self.track_running_stats)


@register_block("batchnorm1d")
class BatchNorm1d(_BatchNorm):
    """`nn.BatchNorm1d` over `[features]` or `[channels, length]`; `num_features` is inferred."""


@register_block("batchnorm2d")
class BatchNorm2d(_BatchNorm):
    """`nn.BatchNorm2d` over `[channels, height, width]`; `num_features` is inferred."""


@register_block("layernorm")
class LayerNorm(Block):
    """`nn.LayerNorm` over the last `dims` axes (default the last one), sizes inferred."""

    dims: Size = Field(1, description="how many trailing axes to normalise over")
    eps: Annotated[float, Field(gt=0)] = Field(1e-5, description="added to the variance")
    elementwise_affine: bool = Field(True, description="learn a per-element scale (and shift)")
    bias: bool = Field(True, description="learn the shift too")

    def output_shape(self, shape: Shape) -> Shape:
        if len(shape) < self.dims:
            raise ShapeError(f"normalises the last {self.dims} axes, but input {fmt_shape(shape)} "
                             f"has {len(shape)}")
        return shape

    def build(self, shape: Shape) -> nn.Module:
        return nn.LayerNorm(list(shape[-self.dims:]), eps=self.eps,
                            elementwise_affine=self.elementwise_affine, bias=self.bias)

    def parameter_count(self, shape: Shape) -> counts.Counts:
        return counts.layernorm(math.prod(shape[-self.dims:]), self.elementwise_affine, self.bias)


# --- regularisation and activations --------------------------------------------------------------
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


class _Elementwise(Block):
    """Activations: shape in equals shape out."""

    def output_shape(self, shape: Shape) -> Shape:
        return shape

    def parameter_count(self, shape: Shape) -> counts.Counts:
        return counts.NOTHING


@register_block("relu")
class ReLU(_Elementwise):
    """`nn.ReLU`: max(0, x), shape unchanged."""

    def build(self, shape: Shape) -> nn.Module:
        return nn.ReLU()


@register_block("gelu")
class GELU(_Elementwise):
    """`nn.GELU` (transformers, ConvNeXt), shape unchanged."""

    approximate: Literal["none", "tanh"] = Field("none", description="'tanh': the faster "
                                                  "approximation")

    def build(self, shape: Shape) -> nn.Module:
        return nn.GELU(approximate=self.approximate)


@register_block("silu")
class SiLU(_Elementwise):
    """`nn.SiLU` (swish, EfficientNet), shape unchanged."""

    def build(self, shape: Shape) -> nn.Module:
        return nn.SiLU()


@register_block("tanh")
class Tanh(_Elementwise):
    """`nn.Tanh`, shape unchanged."""

    def build(self, shape: Shape) -> nn.Module:
        return nn.Tanh()


@register_block("sigmoid_act")
class SigmoidActivation(_Elementwise):
    """A sigmoid *inside* the backbone (gates); heads emit logits and never need this."""

    def build(self, shape: Shape) -> nn.Module:
        return nn.Sigmoid()


@register_block("leaky_relu")
class LeakyReLU(_Elementwise):
    """`nn.LeakyReLU`: x, or `negative_slope * x` below zero; shape unchanged."""

    negative_slope: float = Field(0.01, description="slope for negative inputs")

    def build(self, shape: Shape) -> nn.Module:
        return nn.LeakyReLU(self.negative_slope)


@register_block("identity")
class Identity(_Elementwise):
    """`nn.Identity`: passes its input through (a placeholder, e.g. an empty shortcut)."""

    def build(self, shape: Shape) -> nn.Module:
        return nn.Identity()


# --- pooling -------------------------------------------------------------------------------------
class _Pool(Block):
    kernel_size: IntOrList = Field(description="window size, one number or one per spatial axis")
    stride: IntOrList | None = Field(None, description="step of the window (default: the kernel size)")
    padding: PadOrList = Field(0, description="padding per side, at most half the kernel")
    ceil_mode: bool = Field(False, description="round output lengths up instead of down")

    def _n(self) -> int:
        return int(self.type[-2])

    def _window(self, shape: Shape, dilation: IntOrList = 1) -> Shape:
        n = self._n()
        require_rank(shape, n + 1, _SPATIAL[n])
        kernel = expand(self.kernel_size, n, "kernel_size")
        stride = expand(self.stride if self.stride is not None else self.kernel_size, n, "stride")
        padding = expand(self.padding, n, "padding")
        dilation = expand(dilation, n, "dilation")
        for k, p in zip(kernel, padding, strict=True):
            if p > k // 2:
                raise ShapeError(f"padding {p} must be at most half the kernel size {k}")
        return (shape[0], *(
            conv_output_length(length, k, s, p, d, ceil_mode=self.ceil_mode, what="pooling window")
            for length, k, s, p, d in zip(shape[1:], kernel, stride, padding, dilation, strict=True)
        ))

    def _args(self) -> dict:
        return {"kernel_size": _tuple(self.kernel_size), "stride": _tuple(self.stride),
                "padding": _tuple(self.padding), "ceil_mode": self.ceil_mode}

    def parameter_count(self, shape: Shape) -> counts.Counts:
        return counts.NOTHING


class _MaxPool(_Pool):
    dilation: IntOrList = Field(1, description="spacing between window elements")

    def output_shape(self, shape: Shape) -> Shape:
        return self._window(shape, self.dilation)

    def build(self, shape: Shape) -> nn.Module:
        pool = nn.MaxPool1d if self._n() == 1 else nn.MaxPool2d
        return pool(**self._args(), dilation=_tuple(self.dilation))


class _AvgPool(_Pool):
    count_include_pad: bool = Field(True, description="count padded zeros in the average")

    def output_shape(self, shape: Shape) -> Shape:
        return self._window(shape)

    def build(self, shape: Shape) -> nn.Module:
        pool = nn.AvgPool1d if self._n() == 1 else nn.AvgPool2d
        return pool(**self._args(), count_include_pad=self.count_include_pad)


@register_block("maxpool1d")
class MaxPool1d(_MaxPool):
    """`nn.MaxPool1d` on `[channels, length]`: the largest value of each window."""


@register_block("maxpool2d")
class MaxPool2d(_MaxPool):
    """`nn.MaxPool2d` on `[channels, height, width]`: the largest value of each window."""


@register_block("avgpool1d")
class AvgPool1d(_AvgPool):
    """`nn.AvgPool1d` on `[channels, length]`: the mean of each window."""


@register_block("avgpool2d")
class AvgPool2d(_AvgPool):
    """`nn.AvgPool2d` on `[channels, height, width]`: the mean of each window."""


@register_block("adaptive_avgpool2d")
class AdaptiveAvgPool2d(Block):
    """`nn.AdaptiveAvgPool2d`: `[C, H, W]` -> `[C, *output_size]` whatever H and W are."""

    output_size: IntOrList = Field(1, description="output height and width (one number: both)")

    def output_shape(self, shape: Shape) -> Shape:
        require_rank(shape, 3, _SPATIAL[2])
        return (shape[0], *expand(self.output_size, 2, "output_size"))

    def build(self, shape: Shape) -> nn.Module:
        return nn.AdaptiveAvgPool2d(_tuple(self.output_size))

    def parameter_count(self, shape: Shape) -> counts.Counts:
        return counts.NOTHING


@register_block("global_avgpool")
class GlobalAvgPoolBlock(Block):
    """Average over all spatial axes, `[C, H, W]` or `[C, L]` -> `[C]` (ResNet's final pool)."""

    def output_shape(self, shape: Shape) -> Shape:
        if len(shape) < 2:
            raise ShapeError(f"expects [channels, *spatial] per sample, got {fmt_shape(shape)}")
        return (shape[0],)

    def build(self, shape: Shape) -> nn.Module:
        from blocks.layers.modules.pooling import GlobalAvgPool

        return GlobalAvgPool(len(shape) - 1)

    def parameter_count(self, shape: Shape) -> counts.Counts:
        return counts.NOTHING


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


# the nn.Module classes moved to the torch side; old imports still find them
__getattr__ = moved_to("blocks.layers.modules.pooling", {'GlobalAvgPool'}, __name__)
