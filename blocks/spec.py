"""The model spec and the recipe: pydantic models users build in Python or load from YAML."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, Field, PositiveInt, PrivateAttr, field_validator, model_validator

import blocks.catalogue  # noqa: F401 - registers the built-in block types
import blocks.composites  # noqa: F401 - registers residual / repeat / torch
import blocks.layers  # noqa: F401 - registers the modern-classifier block types
from blocks.composites import LayerTrace, trace_sequence
from blocks.data.spec import DataSpec
from blocks.errors import Problem, ShapeError, SpecError
from blocks.heads import HeadSpec, SigmoidHead, SoftmaxHead
from blocks.registry import AnyBlock, SpecModel, add_block_definitions
from blocks.shapes import Shape
from blocks.train.spec import TrainSpec
from blocks.weights import WeightsSpec

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
    "bfloat16": torch.bfloat16, "int64": torch.int64,
}
SINGLE_HEAD = "output"  # the name a lone `head:` gets in metrics and predictions


class InputSpec(SpecModel):
    """Per-sample input: `shape` excludes the batch axis (`[1, 28, 28]` for MNIST-like images)."""

    shape: Annotated[list[PositiveInt], Field(min_length=1)]
    dtype: Literal["float32", "float64", "float16", "bfloat16", "int64"] = "float32"

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]


@dataclass(frozen=True)
class ShapeReport:
    """What shape inference found: every block's shapes, the features, each head's logits."""

    input_shape: Shape
    layers: list[LayerTrace]
    features: Shape
    heads: dict[str, Shape]


class ModelSpec(SpecModel):
    """A classifier: input -> backbone blocks -> one `head` (tensor out) or named `heads` (dict)."""

    name: str | None = None
    description: str | None = None
    input: InputSpec
    backbone: list[AnyBlock] = Field(default_factory=list)
    head: HeadSpec | None = None
    heads: dict[str, HeadSpec] | None = None
    weights: WeightsSpec | None = None  # imported by `build` (torchvision's, another run's)

    @field_validator("heads")
    @classmethod
    def _head_names(cls, heads: dict[str, SoftmaxHead | SigmoidHead] | None):
        if heads is not None:
            if not heads:
                raise ValueError("`heads` is empty; give at least one named head")
            for name in heads:
                if not name.isidentifier():
                    raise ValueError(f"head name {name!r} must be an identifier (letters, digits, _)")
        return heads

    @model_validator(mode="after")
    def _one_head_form(self) -> ModelSpec:
        if (self.head is None) == (self.heads is None):
            raise ValueError("give exactly one of `head` (a single head) or `heads` (named heads)")
        return self

    @property
    def multi_head(self) -> bool:
        return self.heads is not None

    @property
    def head_specs(self) -> dict[str, SoftmaxHead | SigmoidHead]:
        """Heads by name; a lone `head` is named `output`."""
        return dict(self.heads) if self.heads is not None else {SINGLE_HEAD: self.head}

    def infer_shapes(self, prefix: str = "model") -> ShapeReport:
        """Static shape inference for every block and head; a located `SpecError` if impossible."""
        input_shape = tuple(self.input.shape)
        try:
            layers, features = trace_sequence(self.backbone, input_shape, "backbone")
        except ShapeError as err:
            raise SpecError(Problem(f"{prefix}.backbone{err.path}", err.describe(), "shape_error")) from None
        heads: dict[str, Shape] = {}
        problems = []
        for name, head in self.head_specs.items():
            where = f"{prefix}.heads.{name}" if self.multi_head else f"{prefix}.head"
            try:
                heads[name] = head.output_shape(features)
            except ShapeError as err:
                problems.append(Problem(where, err.reason, "shape_error"))
        if problems:
            raise SpecError(problems)
        return ShapeReport(input_shape, layers, features, heads)


class _WithBlockSchemas(SpecModel):
    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """pydantic's schema plus one definition per registered block type (plugins included)."""
        return add_block_definitions(super().model_json_schema(*args, **kwargs))


class Recipe(_WithBlockSchemas):
    """A whole job: the model, the data it trains on, and how to train it."""

    model: ModelSpec
    data: DataSpec | None = None
    train: TrainSpec = Field(default_factory=TrainSpec)
    _source_path: Path | None = PrivateAttr(default=None)

    def __eq__(self, other: object) -> bool:
        """Equal when the specs are equal; where a recipe was loaded from is not part of it."""
        if not isinstance(other, BaseModel):
            return NotImplemented
        return type(other) is type(self) and other.__dict__ == self.__dict__

    __hash__ = None  # type: ignore[assignment] - mutable, like every pydantic model

    @property
    def source_path(self) -> Path | None:
        """The file this recipe was loaded from; relative data paths resolve against its folder."""
        return self._source_path
