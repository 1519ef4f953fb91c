"""Preprocessing as part of the model: what training did to raw inputs travels with the weights.

A model whose spec has `preprocess:` takes *raw* inputs (what the data source produced: CSV
feature columns, 8x8 digit pixels 0..16, ...) and its first module turns them into the
backbone's input (`model.input.shape`). The configuration lives in the recipe; the statistics
fitted on the training split (`mean`, `std`) are buffers, so they are saved in
`model.safetensors` with the weights and can never be separated from them. Every path that
predicts (`model(x)`, `predict`, `blocks predict`, `evaluate`, exports) runs the same module.
"""

from __future__ import annotations

import math
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt, model_validator
from torch import nn

from blocks.registry import SpecModel

FiniteScale = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]


class PreprocessSpec(SpecModel):
    """Raw input -> backbone input, in this order: scale, standardize, resize, reshape.

    Training fills it in from the `data:` section (and fits `standardize` statistics on the
    training split) when a recipe does not declare it; the run folder's `recipe.yaml` then
    holds it, and `model.safetensors` holds the statistics.
    """

    raw_shape: Annotated[list[PositiveInt], Field(min_length=1)] = Field(
        description="per-sample shape of a raw input, as the data source gives it")
    scale: FiniteScale = Field(default=1.0, description="raw values are multiplied by this first")
    standardize: bool = Field(
        default=False, description="subtract the training mean and divide by the training "
        "standard deviation, per raw feature (buffers `preprocess.mean`, `preprocess.std`)")
    resize_from: Annotated[list[PositiveInt], Field(min_length=3, max_length=3)] | None = Field(
        default=None, description="[C, H, W] image the raw values are viewed as, then resized "
        "(bilinear) to the model input's height and width")
    features: list[str] | None = Field(
        default=None, description="names of the raw feature columns, in order (CSV headers)")

    @model_validator(mode="after")
    def _consistent(self) -> PreprocessSpec:
        raw = math.prod(self.raw_shape)
        if self.resize_from is not None and math.prod(self.resize_from) != raw:
            raise ValueError(f"resize_from {self.resize_from} holds {math.prod(self.resize_from)} "
                             f"values but a raw input has {raw}")
        if self.features is not None and len(self.features) != raw:
            raise ValueError(f"features names {len(self.features)} columns but a raw input has "
                             f"{raw} values")
        return self

    @property
    def raw_size(self) -> int:
        return math.prod(self.raw_shape)

    def check_fits(self, input_shape: tuple[int, ...]) -> str | None:
        """Why this preprocessing cannot produce `input_shape`, or None when it can."""
        if self.resize_from is not None:
            if len(input_shape) != 3 or input_shape[0] != self.resize_from[0]:
                return (f"resize_from {self.resize_from} needs a [C, H, W] model input with the "
                        f"same {self.resize_from[0]} channel(s), got {list(input_shape)}")
            return None
        if self.raw_size != math.prod(input_shape):
            return (f"a raw input of shape {self.raw_shape} ({self.raw_size} values) cannot be "
                    f"reshaped to the model input {list(input_shape)} ({math.prod(input_shape)} "
                    "values); set `resize_from` for images or fix `raw_shape`")
        return None


class Preprocessing(nn.Module):
    """The module form of a `PreprocessSpec`; `mean`/`std` are buffers (saved with the weights)."""

    def __init__(self, spec: PreprocessSpec, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.scale = float(spec.scale)
        self.standardize = spec.standardize
        self.resize_from = tuple(spec.resize_from) if spec.resize_from is not None else None
        self.input_shape = tuple(input_shape)
        if spec.standardize:
            self.register_buffer("mean", torch.zeros(spec.raw_shape))
            self.register_buffer("std", torch.ones(spec.raw_shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale != 1.0:
            x = x * self.scale
        if self.standardize:
            x = (x - self.mean) / self.std
        if self.resize_from is not None:
            x = x.reshape(x.shape[0], *self.resize_from)
            if tuple(self.resize_from[1:]) != self.input_shape[1:]:
                x = F.interpolate(x, size=self.input_shape[1:], mode="bilinear", align_corners=False)
        return x.reshape(x.shape[0], *self.input_shape)

    @torch.no_grad()
    def fit(self, raw: torch.Tensor) -> None:
        """Set `mean`/`std` from raw training inputs (after `scale`); constant features get std 1."""
        if not self.standardize:
            return
        values = raw.to(torch.float64) * self.scale
        mean = values.mean(dim=0)
        std = values.std(dim=0, unbiased=False)
        std = torch.where(std > 0, std, torch.ones_like(std))
        self.mean.copy_(mean.to(self.mean.dtype))
        self.std.copy_(std.to(self.std.dtype))

    def extra_repr(self) -> str:
        parts = [f"scale={self.scale:g}"] if self.scale != 1.0 else []
        parts += ["standardize"] if self.standardize else []
        parts += [f"resize_from={list(self.resize_from)}"] if self.resize_from else []
        return ", ".join(parts + [f"to={list(self.input_shape)}"])
