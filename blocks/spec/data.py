"""The recipe's `data:` section: where samples come from and how they are split."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from blocks.core.numbers import (
    NonNegativeReal,
    NonNegativeSize,
    Real,
    Seed,
    Size,
    real_type,
    size_type,
)
from blocks.spec.registry import SpecModel

BUNDLED_DATASETS = ("digits", "breast_cancer", "iris", "wine")
SOURCES = ("dataset", "csv", "npz", "synthetic", "images", "parquet")
Degrees = real_type(ge=0, le=180)
Share = real_type(gt=0, le=1)  # of an image's area
UnitReal = real_type(ge=0, le=1)
Fraction = real_type(ge=0, lt=1)  # of the samples


class CsvSource(SpecModel):
    """A CSV file with a header row. Paths are relative to the recipe file.

    Cells may hold class names (target), category names (`categorical` columns) and missing
    values (`NA`, empty; see `data.impute`); the model's `preprocess` encodes them."""

    path: str = Field(description="the CSV file, relative to the recipe")
    target: str | list[str] | dict[str, str | list[str]] = Field(
        description="target column(s): one name, a list (multi-label sigmoid head, or one column "
        "per head in head order), or head name -> column (softmax) / columns (sigmoid)")
    features: list[str] | None = Field(default=None, description="feature columns; default: all others")
    delimiter: Annotated[str, Field(min_length=1, max_length=1)] = Field(
        default=",", description="the character between cells (`;` or a tab for some exports)")
    categorical: (list[str] | dict[str, Literal["one_hot", "embedding"] | Size]
                  | Literal["auto"] | None) = Field(
        default=None, description="feature columns holding category names, encoded by the "
        "model (vocabulary stored in `model.preprocess.categories`): a list (one-hot), a mapping "
        "column -> `one_hot`, `embedding` (a learned vector, size by the fastai rule) or an "
        "embedding size; `auto`: one-hot every column holding text only")
    unknown_category: Literal["error", "ignore"] = Field(
        default="error", description="a category name not seen in training, when predicting: "
        "an error naming line and column, or `ignore` (an all-zero one-hot row)")


class ParquetSource(SpecModel):
    """A Parquet file, a folder of Parquet shards, or an Arrow IPC (`.arrow`/`.feather`) file;
    columns by name, as for a CSV file. Needs pyarrow (`pip install 'blocks[tables]'`)."""

    path: str = Field(description="the file or folder of `.parquet` shards, relative to the recipe")
    target: str | list[str] | dict[str, str | list[str]] = Field(
        description="target column(s), as for `data.csv.target`")
    features: list[str] | None = Field(default=None, description="feature columns; default: all others")
    categorical: (list[str] | dict[str, Literal["one_hot", "embedding"] | Size]
                  | Literal["auto"] | None) = Field(
        default=None, description="feature columns holding category names, as for "
        "`data.csv.categorical` (`auto`: every text column)")
    unknown_category: Literal["error", "ignore"] = Field(
        default="error", description="a category name not seen in training, when predicting: "
        "an error naming row and column, or `ignore` (an all-zero one-hot row)")


class StreamSpec(SpecModel):
    """Read the training data in chunks instead of whole: memory is bounded by the chunk and
    the shuffle buffer, not by the file. Statistics are fitted in one bounded pass first."""

    chunk_rows: size_type(1, 10_000_000) = Field(
        default=65_536, description="rows read from the file at a time")
    shuffle_buffer: size_type(1, 100_000_000) = Field(
        default=100_000, description="training rows held and drawn from at random (a buffer "
        "holding the whole split gives the same batches as reading it whole)")


class NpzSource(SpecModel):
    """A NumPy `.npz` archive holding the features and the target(s) under these keys."""

    path: str = Field(description=".npz file, relative to the recipe's folder")
    x: str = Field("x", description="key of the feature array")
    y: str | dict[str, str] = Field(default="y", description="target key, or head name -> key")


class SyntheticSource(SpecModel):
    """Random separable data of the model's input shape, for smoke tests and benchmarks."""

    samples: Size = Field(512, description="number of samples generated")
    noise: NonNegativeReal = Field(
        0.1, description="standard deviation of the noise added")


class ImageAugment(SpecModel):
    """Training-only random augmentation of images (validation and prediction never see it)."""

    flip: bool = Field(default=False, description="mirror left-right with probability 1/2")
    rotate: Degrees = Field(
        default=0.0, description="rotate by a random angle in [-rotate, rotate] degrees")
    crop_scale: Share = Field(
        default=1.0, description="random resized crop: keep a random area fraction in "
        "[crop_scale, 1] of the image, resized back (1: no crop)")
    jitter: UnitReal = Field(
        default=0.0, description="colour jitter: brightness and contrast each scaled by a "
        "random factor in [1 - jitter, 1 + jitter]")


class ImageFolderSource(SpecModel):
    """Images in one sub-folder per class (`DIR/cat/1.png`, `DIR/dog/2.jpg`), decoded with
    Pillow and resized to `model.input.shape`; class names are the folder names, sorted."""

    path: str = Field(description="the folder holding one sub-folder per class, relative to the recipe")
    resize: Literal["stretch", "crop"] = Field(
        default="crop", description="`crop`: scale the short side to the input size, then "
        "centre-crop; `stretch`: resize to the input size ignoring the aspect ratio")
    mean: list[Real] | None = Field(
        default=None, description="per-channel mean the model subtracts (on 0..1 pixels); "
        "default: fitted on the training split")
    std: list[Real] | None = Field(
        default=None, description="per-channel standard deviation the model divides by; "
        "default: fitted on the training split")
    augment: ImageAugment | None = Field(
        default=None, description="random changes applied to training images only")
    workers: size_type(0, 64) = Field(
        default=0, description="DataLoader worker processes decoding images (0: in the main process)")
    cache_mb: NonNegativeSize = Field(
        default=1024, description="decoded images are kept in memory when they fit in this many "
        "MiB; otherwise each epoch decodes them again")
    skip_bad_files: bool = Field(
        default=False, description="skip (and list) files that are not readable images instead "
        "of stopping with an error naming the first")


class DataSpec(SpecModel):
    """Exactly one source (`dataset`, `csv`, `parquet`, `npz`, `images` or `synthetic`), then a
    seeded split."""

    dataset: Literal["digits", "breast_cancer", "iris", "wine"] | None = Field(
        None, description="a bundled dataset (scikit-learn's, offline)")
    csv: CsvSource | None = Field(None, description="a CSV file with a header row")
    npz: NpzSource | None = Field(None, description="a NumPy .npz archive")
    synthetic: SyntheticSource | None = Field(
        None, description="random separable data of the model's input shape")
    images: ImageFolderSource | None = Field(
        None, description="a folder of images, one sub-folder per class")
    parquet: ParquetSource | None = Field(
        None, description="a Parquet file or folder of shards, or an Arrow IPC file")
    val_fraction: Fraction = Field(
        0.2, description="fraction held out for validation (0: no validation split)")
    seed: Seed = Field(0, description="seed of the train/validation split")
    standardize: bool | None = Field(
        default=None, description="z-score features with train statistics; default: on for tabular data"
    )
    impute: Literal["mean", "median", "most_frequent", "constant", "refuse"] = Field(
        default="refuse", description="missing CSV cells (`NA`, empty, `nan`): filled by the model "
        "with a value fitted on the training split (categorical columns: the most frequent "
        "category), or `refuse`d with their line and column")
    fill_value: Real = Field(
        default=0.0, description="the value `impute: constant` fills in")
    stream: StreamSpec | None = Field(
        default=None, description="read a CSV/Parquet training file in chunks (data bigger "
        "than memory) instead of whole")
    classes: Annotated[list[NonNegativeSize], Field(min_length=2)] | None = Field(
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
        given = [k for k in SOURCES if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one data source: `dataset`, `csv`, `parquet`, `npz`, "
                             "`images` or `synthetic`"
                             + (f" (got {', '.join(given)})" if given else ""))
        if self.stream is not None and self.csv is None and self.parquet is None:
            raise ValueError("`stream` reads a `csv` or `parquet` source in chunks")
        return self
