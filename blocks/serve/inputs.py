"""What a run's `POST /predict` takes and answers, derived from its model spec alone.

One description serves three jobs, so they cannot disagree: the pydantic validator of request
bodies (types, column names, category vocabularies, row length, row count), the JSON Schema in
the OpenAPI document, and `GET /schema`. Three kinds of input:

- `tabular`: the run knows its feature names (trained from a CSV): each row is an object with
  one key per feature; numbers for numeric columns, a category name for categorical ones,
  `null` for a missing cell when the model imputes;
- `array`: no feature names (NPZ, bundled or synthetic data): each row is a flat list of the
  per-sample number of values, in the order of the raw input (C-order for `[C, H, W]`);
- `image`: trained on an image folder: each row is `{"image": "<base64 file>"}`, or the files
  are uploaded as `multipart/form-data` fields named `image`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, TypeAdapter
from typing_extensions import TypedDict

from blocks.spec.model import ModelSpec

Kind = Literal["tabular", "array", "image"]
IMAGE_FIELD = "image"

#: a JSON number that is a finite float; ints are taken, booleans and numeric strings are not
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Integer = Annotated[int, Field(strict=True)]
Base64 = Annotated[str, Field(strict=True, min_length=1,
                              description="the image file (PNG, JPEG, ...) base64-encoded; a "
                                          "`data:image/...;base64,` prefix is allowed")]
FORBID = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Limits:
    """What one request may hold, and how requests are batched."""

    max_rows: int = 1024
    max_request_bytes: int = 8 << 20
    max_batch: int = 64
    max_wait_ms: float = 5.0
    max_image_pixels: int = 25_000_000  # per decoded image: a small PNG can unpack to gigabytes


@dataclass(frozen=True)
class Feature:
    name: str
    categories: list[str] | None  # None: a numeric column
    nullable: bool


@dataclass
class InputSchema:
    """The run's inputs and outputs as a client sees them."""

    kind: Kind
    raw_shape: list[int]
    dtype: str
    features: list[Feature] = field(default_factory=list)
    unknown_category: str = "error"
    nullable: bool = False  # array rows: null is a missing value (the model imputes)
    vocabulary: int | None = None  # int64 rows feeding an embedding: ids are 0..vocabulary-1
    heads: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def row_size(self) -> int:
        return math.prod(self.raw_shape)

    def body_type(self, limits: Limits) -> Any:
        """The TypedDict request bodies are validated against (and the OpenAPI schema of)."""
        rows = Annotated[list[self._row_type()], Field(  # type: ignore[misc]
            min_length=1, max_length=limits.max_rows,
            description=f"1 to {limits.max_rows} rows, answered in order")]
        # functional form: the row type is built at run time (noqa: class syntax cannot see it)
        body = TypedDict("PredictRequest", {"rows": rows})  # type: ignore[misc]  # noqa: UP013
        body.__pydantic_config__ = FORBID  # type: ignore[attr-defined]
        return body

    def _row_type(self) -> Any:
        if self.kind == "image":
            row = TypedDict("ImageRow", {IMAGE_FIELD: Base64})  # type: ignore[misc]
        elif self.kind == "tabular":
            fields: dict[str, Any] = {}
            for feature in self.features:
                value: Any = Number
                if feature.categories is not None:
                    value = (str if self.unknown_category == "ignore"
                             else Literal[tuple(feature.categories)])  # type: ignore[valid-type]
                fields[feature.name] = value | None if feature.nullable else value
            row = TypedDict("Row", fields)  # type: ignore[misc]
        else:
            value = Number
            if self.dtype == "int64":
                value = Integer if self.vocabulary is None else Annotated[
                    int, Field(strict=True, ge=0, lt=self.vocabulary)]
            value = value | None if self.nullable else value
            size = self.row_size
            return Annotated[list[value], Field(  # type: ignore[valid-type]
                min_length=size, max_length=size,
                description=f"{size} numbers: one raw input of shape {self.raw_shape}, flattened")]
        row.__pydantic_config__ = FORBID  # type: ignore[attr-defined]
        return row

    def describe(self, limits: Limits) -> dict[str, Any]:
        """`GET /schema`: everything a client needs to build a request and read the answer."""
        out: dict[str, Any] = {"kind": self.kind, "raw_shape": self.raw_shape, "dtype": self.dtype}
        if self.kind == "tabular":
            out["features"] = [
                {"name": f.name, "type": "number" if f.categories is None else "category",
                 **({"categories": f.categories} if f.categories is not None else {}),
                 "nullable": f.nullable} for f in self.features]
            out["unknown_category"] = self.unknown_category
        elif self.kind == "array":
            out["row_length"] = self.row_size
            out["nullable"] = self.nullable
            if self.vocabulary is not None:
                out["vocabulary"] = self.vocabulary
        else:
            out["image_field"] = IMAGE_FIELD
            out["content_types"] = ["application/json", "multipart/form-data"]
        out["heads"] = self.heads
        out["limits"] = {"max_rows": limits.max_rows, "max_request_bytes":
                         limits.max_request_bytes, "max_batch": limits.max_batch,
                         "max_wait_ms": limits.max_wait_ms}
        out["example"] = self.example()
        return out

    def example(self) -> dict[str, Any]:
        """A valid request body (the first category of each categorical column, zeros)."""
        if self.kind == "image":
            return {"rows": [{IMAGE_FIELD: "<base64 of a PNG or JPEG file>"}]}
        if self.kind == "tabular":
            return {"rows": [{f.name: (f.categories[0] if f.categories else 0.0)
                              for f in self.features}]}
        return {"rows": [[0] * self.row_size]}

    def response_schema(self) -> dict[str, Any]:
        """JSON Schema of a `POST /predict` answer, with this run's head and label names."""
        def head_schema(info: dict[str, Any]) -> dict[str, Any]:
            names = info["labels"]
            probs = {"type": "object", "properties": {n: {"type": "number"} for n in names},
                     "required": names}
            if info["kind"] == "softmax":
                return {"type": "object", "required": ["label", "probabilities"],
                        "properties": {"label": {"enum": names}, "probabilities": probs}}
            return {"type": "object", "required": ["labels", "probabilities"],
                    "properties": {"labels": {"type": "object", "required": names,
                                              "properties": {n: {"enum": [0, 1]} for n in names}},
                                   "probabilities": probs}}

        if len(self.heads) == 1:
            row = head_schema(next(iter(self.heads.values())))
        else:
            row = {"type": "object", "required": list(self.heads),
                   "properties": {k: head_schema(v) for k, v in self.heads.items()}}
        return {"type": "object", "required": ["predictions"],
                "properties": {"predictions": {"type": "array", "items": row}}}


def input_schema(spec: ModelSpec, labels: dict[str, list[str]]) -> InputSchema:
    """The run's `InputSchema`; `labels`: each head's class names (`BlocksModel.label_names`)."""
    pre = spec.preprocess
    heads: dict[str, dict[str, Any]] = {}
    for name, head in spec.head_specs.items():
        heads[name] = {"kind": head.type, "labels": labels[name]}
        if head.type == "sigmoid":
            heads[name]["threshold"] = head.threshold
    imputes = pre is not None and pre.impute is not None
    common = {"raw_shape": list(spec.sample_shape), "dtype": spec.input.dtype, "heads": heads}
    if pre is not None and pre.images is not None:
        return InputSchema("image", **common)
    if pre is not None and pre.features:
        categories = pre.categories or {}
        features = [Feature(name, categories.get(name), imputes) for name in pre.features]
        return InputSchema("tabular", features=features, unknown_category=pre.unknown_category,
                           **common)
    first = spec.backbone[0] if spec.backbone else None
    vocabulary = (first.num_embeddings if pre is None and spec.input.dtype == "int64"
                  and getattr(first, "type", None) == "embedding" else None)
    return InputSchema("array", nullable=imputes, vocabulary=vocabulary, **common)


def body_adapter(schema: InputSchema, limits: Limits) -> TypeAdapter:
    return TypeAdapter(schema.body_type(limits))
