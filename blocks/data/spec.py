"""The recipe's `data:` section: where samples come from and how they are split."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from blocks.numbers import Seed, Size
from blocks.registry import SpecModel

BUNDLED_DATASETS = ("digits", "breast_cancer", "iris", "wine")


class CsvSource(SpecModel):
    """A CSV file with a header row. Paths are relative to the recipe file."""

    path: str = Field(description="CSV file, relative to the recipe's folder")
    target: str | list[str] = Field(description="target column(s); a list for multi-label heads")
    features: list[str] | None = Field(default=None, description="feature columns; default: all others")


class NpzSource(SpecModel):
    """A NumPy `.npz` archive holding the features and the target(s) under these keys."""

    path: str = Field(description=".npz file, relative to the recipe's folder")
    x: str = Field("x", description="key of the feature array")
    y: str | dict[str, str] = Field(default="y", description="target key, or head name -> key")


class SyntheticSource(SpecModel):
    """Random separable data of the model's input shape, for smoke tests and benchmarks."""

    samples: Size = Field(512, description="number of samples generated")
    noise: Annotated[float, Field(ge=0)] = Field(
        0.1, description="standard deviation of the noise added")


class DataSpec(SpecModel):
    """Exactly one source (`dataset`, `csv`, `npz` or `synthetic`), then a seeded split."""

    dataset: Literal["digits", "breast_cancer", "iris", "wine"] | None = Field(
        None, description="a bundled dataset (scikit-learn's, offline)")
    csv: CsvSource | None = Field(None, description="a CSV file with a header row")
    npz: NpzSource | None = Field(None, description="a NumPy .npz archive")
    synthetic: SyntheticSource | None = Field(
        None, description="random separable data of the model's input shape")
    val_fraction: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        0.2, description="fraction held out for validation (0: no validation split)")
    seed: Seed = Field(0, description="seed of the train/validation split")
    standardize: bool | None = Field(
        default=None, description="z-score features with train statistics; default: on for tabular data"
    )
    classes: Annotated[list[int], Field(min_length=2)] | None = Field(
        default=None, description="keep only the samples of these class ids, relabelled 0, 1, ... "
        "in this order (e.g. digits [5, 6, 7, 8, 9] for a 5-class task)")

    @field_validator("classes")
    @classmethod
    def _distinct(cls, classes: list[int] | None) -> list[int] | None:
        if classes is not None and len(set(classes)) != len(classes):
            raise ValueError(f"class ids must be distinct, got {classes}")
        return classes

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        given = [k for k in ("dataset", "csv", "npz", "synthetic") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one data source: `dataset`, `csv`, `npz` or `synthetic`"
                             + (f" (got {', '.join(given)})" if given else ""))
        return self
