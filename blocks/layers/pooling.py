"""Pooling: `maxpool1d/2d`, `avgpool1d/2d`, `adaptive_avgpool2d` (named torch classes) and
`global_avgpool` (mean over every spatial axis), whose module and source emitter live here.
"""

from __future__ import annotations

from pydantic import Field

from blocks.core.errors import ExportError, ShapeError
from blocks.core.lazy import nn
from blocks.layers.base import (
    SPATIAL,
    IntOrList,
    PadOrList,
    as_tuple,
    module_getattr,
    torch_modules,
)
from blocks.spec import counts
from blocks.spec.registry import Block, register_block
from blocks.spec.shapes import Shape, conv_output_length, expand, fmt_shape, require_rank

GLOBAL_AVG_POOL = '''
class GlobalAvgPool(nn.Module):
    """Mean over every axis after the channels: [batch, C, *spatial] -> [batch, C]."""

    def __init__(self, spatial_dims: int) -> None:
        super().__init__()
        self.dims = tuple(range(2, 2 + spatial_dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=self.dims)
'''


@torch_modules("GlobalAvgPool")
def modules(torch, nn):  # defined on first build: importing this file needs no torch
    class GlobalAvgPool(nn.Module):
        """Mean over every axis after the channels: `[C, *spatial]` -> `[C]`."""

        def __init__(self, spatial_dims: int) -> None:
            super().__init__()
            self.dims = tuple(range(2, 2 + spatial_dims))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=self.dims)

        def extra_repr(self) -> str:
            return f"dims={self.dims}"

        def emit_source(self, writer, path: str):
            if self.dims != tuple(range(2, 2 + len(self.dims))):
                raise ExportError(f"{path}: GlobalAvgPool over dims {self.dims} is not "
                                  "[C, *spatial]")
            return f"{writer.helper('GlobalAvgPool', GLOBAL_AVG_POOL)}({len(self.dims)})"

    return {"GlobalAvgPool": GlobalAvgPool}


class Pool(Block):
    kernel_size: IntOrList = Field(description="window size, one number or one per spatial axis")
    stride: IntOrList | None = Field(None, description="step of the window (default: the kernel size)")
    padding: PadOrList = Field(0, description="padding per side, at most half the kernel")
    ceil_mode: bool = Field(False, description="round output lengths up instead of down")

    def _n(self) -> int:
        return int(self.type[-2])

    def _window(self, shape: Shape, dilation: IntOrList = 1) -> Shape:
        n = self._n()
        require_rank(shape, n + 1, SPATIAL[n])
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
        return {"kernel_size": as_tuple(self.kernel_size), "stride": as_tuple(self.stride),
                "padding": as_tuple(self.padding), "ceil_mode": self.ceil_mode}

    def parameter_count(self, shape: Shape) -> counts.Counts:
        return counts.NOTHING


class MaxPoolNd(Pool):
    dilation: IntOrList = Field(1, description="spacing between window elements")

    def output_shape(self, shape: Shape) -> Shape:
        return self._window(shape, self.dilation)

    def build(self, shape: Shape) -> nn.Module:
        pool = nn.MaxPool1d if self._n() == 1 else nn.MaxPool2d
        return pool(**self._args(), dilation=as_tuple(self.dilation))


class AvgPoolNd(Pool):
    count_include_pad: bool = Field(True, description="count padded zeros in the average")

    def output_shape(self, shape: Shape) -> Shape:
        return self._window(shape)

    def build(self, shape: Shape) -> nn.Module:
        pool = nn.AvgPool1d if self._n() == 1 else nn.AvgPool2d
        return pool(**self._args(), count_include_pad=self.count_include_pad)


# their names in blocks.layers.catalogue, where they used to live
_Pool, _MaxPool, _AvgPool = Pool, MaxPoolNd, AvgPoolNd


@register_block("maxpool1d")
class MaxPool1d(MaxPoolNd):
    """`nn.MaxPool1d` on `[channels, length]`: the largest value of each window."""

    example = ([8, 100], {"type": "maxpool1d", "kernel_size": 2})


@register_block("maxpool2d")
class MaxPool2d(MaxPoolNd):
    """`nn.MaxPool2d` on `[channels, height, width]`: the largest value of each window."""

    example = ([32, 26, 26], {"type": "maxpool2d", "kernel_size": 2})


@register_block("avgpool1d")
class AvgPool1d(AvgPoolNd):
    """`nn.AvgPool1d` on `[channels, length]`: the mean of each window."""

    example = ([8, 100], {"type": "avgpool1d", "kernel_size": 2})


@register_block("avgpool2d")
class AvgPool2d(AvgPoolNd):
    """`nn.AvgPool2d` on `[channels, height, width]`: the mean of each window."""

    example = ([32, 26, 26], {"type": "avgpool2d", "kernel_size": 2})


@register_block("adaptive_avgpool2d")
class AdaptiveAvgPool2d(Block):
    """`nn.AdaptiveAvgPool2d`: `[C, H, W]` -> `[C, *output_size]` whatever H and W are."""

    example = ([64, 7, 7], {"type": "adaptive_avgpool2d", "output_size": 1})

    output_size: IntOrList = Field(1, description="output height and width (one number: both)")

    def output_shape(self, shape: Shape) -> Shape:
        require_rank(shape, 3, SPATIAL[2])
        return (shape[0], *expand(self.output_size, 2, "output_size"))

    def build(self, shape: Shape) -> nn.Module:
        return nn.AdaptiveAvgPool2d(as_tuple(self.output_size))

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
        return modules().GlobalAvgPool(len(shape) - 1)

    def parameter_count(self, shape: Shape) -> counts.Counts:
        return counts.NOTHING


__getattr__ = module_getattr(__name__, modules)
