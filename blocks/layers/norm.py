"""Normalisation: `batchnorm1d`, `batchnorm2d`, `layernorm` (named torch classes, sizes
inferred) and `layernorm2d`, ConvNeXt's layer norm over the channels of `[C, *spatial]`, whose
module, source emitter and example live here too.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import Field

from blocks.core.errors import ShapeError
from blocks.core.lazy import nn
from blocks.core.numbers import Size
from blocks.core.pysource import call, literal
from blocks.layers.base import SPATIAL, module_getattr, torch_modules
from blocks.spec import counts
from blocks.spec.registry import Block, register_block
from blocks.spec.shapes import Shape, fmt_shape

LAYER_NORM_2D = '''
class LayerNorm2d(nn.LayerNorm):
    """nn.LayerNorm over the channels of [batch, C, *spatial], at each position."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.movedim(1, -1)
        x = nn.functional.layer_norm(
            x, self.normalized_shape, self.weight, self.bias, self.eps
        )
        return x.movedim(-1, 1)
'''


@torch_modules("LayerNorm2d")
def modules(torch, nn):  # defined on first build: importing this file needs no torch
    F = nn.functional

    class LayerNorm2d(nn.LayerNorm):
        """`nn.LayerNorm` over the channels of `[N, C, *spatial]` at every position (ConvNeXt's)."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x.movedim(1, -1)
            x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
            return x.movedim(-1, 1)

        def emit_source(self, writer, path: str):
            name = writer.helper("LayerNorm2d", LAYER_NORM_2D)
            shape = tuple(self.normalized_shape)
            args = [literal(shape[0] if len(shape) == 1 else shape, path)]
            if self.eps != 1e-5:
                args.append(f"eps={literal(self.eps, path)}")
            if not self.elementwise_affine:
                args.append("elementwise_affine=False")
            elif self.bias is None:
                args.append("bias=False")
            return writer.checked(self, call(name, args), path)

    return {"LayerNorm2d": LayerNorm2d}


class BatchNormNd(Block):
    eps: Annotated[float, Field(gt=0)] = Field(1e-5, description="added to the variance")
    momentum: Annotated[float, Field(ge=0, le=1)] | None = Field(
        0.1, description="running statistics' update rate (null: a cumulative average)")
    affine: bool = Field(True, description="learn a per-channel scale and shift")
    track_running_stats: bool = Field(True, description="keep running mean/variance for eval mode")

    def _ranks(self) -> tuple[int, ...]:
        return (1, 2) if self.type == "batchnorm1d" else (3,)

    def output_shape(self, shape: Shape) -> Shape:
        if len(shape) not in self._ranks():
            layout = "features] or [channels, length" if self.type == "batchnorm1d" else SPATIAL[2]
            raise ShapeError(f"expects input [{layout}] per sample, got {fmt_shape(shape)}")
        return shape

    def build(self, shape: Shape) -> nn.Module:
        norm = nn.BatchNorm1d if self.type == "batchnorm1d" else nn.BatchNorm2d
        return norm(shape[0], eps=self.eps, momentum=self.momentum, affine=self.affine,
                    track_running_stats=self.track_running_stats)

    def parameter_count(self, shape: Shape) -> counts.Counts:
        return counts.batchnorm(shape[0], self.affine, self.track_running_stats)


_BatchNorm = BatchNormNd  # its name in blocks.layers.catalogue, where it used to live


@register_block("batchnorm1d")
class BatchNorm1d(BatchNormNd):
    """`nn.BatchNorm1d` over `[features]` or `[channels, length]`; `num_features` is inferred."""


@register_block("batchnorm2d")
class BatchNorm2d(BatchNormNd):
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


@register_block("layernorm2d")
class LayerNorm2dBlock(Block):
    """Layer norm over the channel axis of `[C, H, W]` (or `[C, L]`), each position on its own:
    ConvNeXt's `LayerNorm2d`, the same as `permute` -> `layernorm` -> `permute` back."""

    eps: Annotated[float, Field(gt=0)] = Field(1e-5, description="added to the variance")
    elementwise_affine: bool = Field(True, description="learn a per-channel scale (and shift)")
    bias: bool = Field(True, description="learn the shift too")

    def output_shape(self, shape: Shape) -> Shape:
        if len(shape) < 2:
            raise ShapeError(f"expects [channels, *spatial] per sample, got {fmt_shape(shape)}; "
                             "use `layernorm` on a feature vector")
        return shape

    def build(self, shape: Shape) -> nn.Module:
        return modules().LayerNorm2d(shape[0], eps=self.eps,
                                     elementwise_affine=self.elementwise_affine, bias=self.bias)

    def parameter_count(self, shape: Shape) -> counts.Counts:
        return counts.layernorm(shape[0], self.elementwise_affine, self.bias)


EXAMPLE_RECIPES: dict[str, tuple[str, str]] = {  # title -> (what it shows, recipe)
    "layernorm2d, permute, layer_scale, drop_path": (
        "A ConvNeXt block: channels-last MLP, learned scale and stochastic depth on the branch.", """\
model:
  input: {shape: [3, 32, 32]}
  backbone:
    - {type: conv2d, out_channels: 16, kernel_size: 4, stride: 4}
    - {type: layernorm2d, eps: 1.0e-6}
    - type: residual
      blocks:
        - {type: conv2d, out_channels: 16, kernel_size: 7, padding: 3, groups: 16}
        - {type: permute, dims: [1, 2, 0]}
        - {type: layernorm, eps: 1.0e-6}
        - {type: linear, out_features: 64}
        - gelu
        - {type: linear, out_features: 16}
        - {type: permute, dims: [2, 0, 1]}
        - {type: layer_scale, init_value: 1.0e-6}
        - {type: drop_path, p: 0.1}
    - global_avgpool
  head: {type: softmax, classes: 10}
"""),
}

__getattr__ = module_getattr(__name__, modules)
