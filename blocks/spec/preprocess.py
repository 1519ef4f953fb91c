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
from typing import Annotated, Literal

from pydantic import Field, PositiveInt, model_validator

from blocks.core.lazy import moved_to
from blocks.core.numbers import Size
from blocks.spec.registry import SpecModel

FiniteScale = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class PreprocessSpec(SpecModel):
    """Raw input -> backbone input, in this order: impute, scale, standardize, normalize,
    one-hot encode categories, resize, reshape.

    Raw tabular input is one number per feature column: category columns hold the category's
    code (its index in `categories`, -1 for an unseen one), missing cells NaN (when `impute`).
    Raw image input (an `images` folder source) is `[C, H, W]` at the input size, values 0..1.

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
    categories: dict[str, Annotated[list[str], Field(min_length=1)]] | None = Field(
        default=None, description="feature column -> its category names (code i = name i); "
        "the model one-hot encodes these columns, after the numeric ones, in `features` order")
    embeddings: dict[str, Size] | None = Field(
        default=None, description="category column -> size of a learned embedding that encodes "
        "it instead of one-hot (parameters `preprocess.embeddings.<i>.weight`; an unseen or "
        "missing code gets the all-zero vector)")
    unknown_category: Literal["error", "ignore"] = Field(
        default="error", description="reading a category name outside `categories`: an error, "
        "or code -1 (an all-zero one-hot row)")
    impute: Literal["mean", "median", "most_frequent", "constant"] | None = Field(
        default=None, description="NaN in a raw input is replaced by a per-feature value fitted on "
        "the training split (buffer `preprocess.fill`); categorical columns: most frequent code")
    fill_value: Finite = Field(default=0.0, description="the fill of `impute: constant`")
    images: Literal["crop", "stretch"] | None = Field(
        default=None, description="raw inputs are image files decoded to raw_shape [C, H, W] "
        "(values 0..1) this way: `crop` (short side, then centre) or `stretch`; how `blocks "
        "predict` reads image files")
    channel_mean: list[Finite] | None = Field(
        default=None, description="per-channel mean subtracted from [C, H, W] images (after scale)")
    channel_std: list[Annotated[float, Field(gt=0.0, allow_inf_nan=False)]] | None = Field(
        default=None, description="per-channel standard deviation images are divided by")

    @model_validator(mode="after")
    def _consistent(self) -> PreprocessSpec:
        raw = math.prod(self.raw_shape)
        if self.resize_from is not None and math.prod(self.resize_from) != raw:
            raise ValueError(f"resize_from {self.resize_from} holds {math.prod(self.resize_from)} "
                             f"values but a raw input has {raw}")
        if self.features is not None and len(self.features) != raw:
            raise ValueError(f"features names {len(self.features)} columns but a raw input has "
                             f"{raw} values")
        if self.categories:
            unknown = [c for c in self.categories if c not in (self.features or [])]
            if unknown:
                raise ValueError(f"categories names column(s) {', '.join(map(repr, unknown))} that "
                                 "are not in `features`")
            if self.resize_from is not None or len(self.raw_shape) != 1:
                raise ValueError("categories apply to flat tabular rows (raw_shape [features]), "
                                 "not to images")
            for name, names in self.categories.items():
                if len(set(names)) != len(names):
                    raise ValueError(f"categories of {name!r} repeat a name")
        stray = [c for c in self.embeddings or {} if c not in (self.categories or {})]
        if stray:
            raise ValueError(f"embeddings names column(s) {', '.join(map(repr, stray))} that are "
                             "not in `categories`")
        if (self.channel_mean is None) != (self.channel_std is None):
            raise ValueError("give both channel_mean and channel_std, or neither")
        if self.channel_mean is not None and (
                len(self.raw_shape) != 3
                or not len(self.channel_mean) == len(self.channel_std) == self.raw_shape[0]):
            raise ValueError(f"channel_mean/channel_std need a [C, H, W] raw_shape and one "
                             f"value per channel, got raw_shape {self.raw_shape}")
        return self

    @property
    def category_columns(self) -> list[int]:
        """Indices (in `features`) of the one-hot encoded columns, in `features` order."""
        if not self.categories:
            return []
        return [i for i, name in enumerate(self.features or []) if name in self.categories]

    @property
    def output_size(self) -> int:
        """Values per sample after the one-hot expansion (the backbone input's size)."""
        if not self.categories:
            return self.raw_size
        embed = self.embeddings or {}
        return self.raw_size - len(self.categories) + sum(
            embed.get(name, len(names)) for name, names in self.categories.items())

    @property
    def raw_size(self) -> int:
        return math.prod(self.raw_shape)

    def parameter_count(self) -> tuple[int, int]:
        """(parameters, buffer values) of the `Preprocessing` module, from the spec alone:
        the category embeddings (row 0 for unseen codes), the fitted statistics and the
        spec-derived index and channel buffers."""
        columns = self.category_columns
        embed = self.embeddings or {}
        params = sum((len(self.categories[self.features[i]]) + 1) * embed[self.features[i]]
                     for i in columns if self.features[i] in embed)
        buffers = (2 * self.raw_size if self.standardize else 0) + (
            self.raw_size if self.impute is not None else 0)
        if columns:  # numeric_index and category_index hold one index per raw column between them
            buffers += self.raw_size
        if self.channel_mean is not None:
            buffers += 2 * len(self.channel_mean)
        return params, buffers

    def check_fits(self, input_shape: tuple[int, ...]) -> str | None:
        """Why this preprocessing cannot produce `input_shape`, or None when it can."""
        if self.resize_from is not None:
            if len(input_shape) != 3 or input_shape[0] != self.resize_from[0]:
                return (f"resize_from {self.resize_from} needs a [C, H, W] model input with the "
                        f"same {self.resize_from[0]} channel(s), got {list(input_shape)}")
            return None
        if self.categories and self.output_size != math.prod(input_shape):
            numeric = self.raw_size - len(self.categories)
            embed = self.embeddings or {}
            onehot = ", ".join(f"{k} {len(v)}" for k, v in self.categories.items() if k not in embed)
            vectors = ", ".join(f"{k} {d}" for k, d in embed.items())
            parts = (f" + one-hot {onehot}" if onehot else "") + (f" + embedding {vectors}"
                                                                  if vectors else "")
            return (f"the encoded input has {self.output_size} values ({numeric} numeric "
                    f"feature(s){parts}) but the model input {list(input_shape)} "
                    f"holds {math.prod(input_shape)}; set `model.input.shape: [{self.output_size}]`")
        if not self.categories and self.raw_size != math.prod(input_shape):
            return (f"a raw input of shape {self.raw_shape} ({self.raw_size} values) cannot be "
                    f"reshaped to the model input {list(input_shape)} ({math.prod(input_shape)} "
                    "values); set `resize_from` for images or fix `raw_shape`")
        return None


# the nn.Module moved to the torch side; old imports still find it
__getattr__ = moved_to("blocks.builder.preprocessing", {"Preprocessing"}, __name__)
