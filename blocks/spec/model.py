"""The model spec: the pydantic model of a classifier, built in Python or loaded from YAML.

It knows nothing of data or training; `blocks.spec.recipe.Recipe` composes all three. The block
types it holds are registered by `blocks.layers` (imported by `import blocks`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails

from blocks.core.errors import Problem, ShapeError, SpecError
from blocks.core.lazy import torch
from blocks.core.numbers import Size
from blocks.spec.budget import check_blocks
from blocks.spec.heads import HeadSpec, SigmoidHead, SoftmaxHead
from blocks.spec.inputs import (
    AnyCombiner,
    InputsTrace,
    ModelInput,
    check_input_names,
    combiner_types,
    trace_inputs,
)
from blocks.spec.preprocess import PreprocessSpec
from blocks.spec.registry import AnyBlock, SpecModel
from blocks.spec.shapes import Shape
from blocks.spec.trace import LayerTrace, trace_sequence
from blocks.spec.weights import WeightsSpec

#: Bytes per value of each input dtype (`InputSpec.dtype`, each `torch.<name>`), known without torch (`blocks validate` never imports it).
ELEMENT_SIZES: dict[str, int] = {"float32": 4, "float64": 8, "float16": 2, "bfloat16": 2, "int64": 8}
SINGLE_HEAD = "output"  # the name a lone `head:` gets in metrics and predictions


class InputSpec(SpecModel):
    """Per-sample input: `shape` excludes the batch axis (`[1, 28, 28]` for MNIST-like images)."""

    shape: Annotated[list[Size], Field(min_length=1)] = Field(
        description="per-sample input shape, without the batch axis, e.g. [1, 28, 28] or [30]")
    dtype: Literal["float32", "float64", "float16", "bfloat16", "int64"] = Field(
        "float32", description="input element type; int64 for token ids (an embedding first)")

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    @property
    def weight_element_size(self) -> int:
        """Bytes per parameter of the model built for this input: the input's floating dtype,
        float32 for token ids (`build` casts the weights to a floating input's dtype)."""
        return 4 if self.dtype == "int64" else ELEMENT_SIZES[self.dtype]


@dataclass(frozen=True)
class ShapeReport:
    """What shape inference found: every block's shapes, the features, each head's logits."""

    input_shape: Shape
    layers: list[LayerTrace]
    features: Shape
    heads: dict[str, Shape]
    inputs: InputsTrace | None = None  # a multi-input model: encoders and combiner


class ModelSpec(SpecModel):
    """A classifier: input -> backbone blocks -> one `head` (tensor out) or named `heads` (dict)."""

    name: str | None = Field(None, description="a name for summaries, run folders and exports")
    description: str | None = Field(
        None, description="one line about the model (shown by `blocks recipes`)")
    input: InputSpec | None = Field(
        None, description="the per-sample input the backbone receives (one input; or `inputs`)")
    inputs: dict[str, ModelInput] | None = Field(
        None, description="several named inputs, each with a `kind` and an encoder; they are "
        "combined (`combine`) into the backbone's input (docs/multi_input.md)")
    combine: AnyCombiner | None = Field(
        None, description="how the encoded `inputs` become one vector: `concat` (default), "
        "`gated` or `attention`")
    preprocess: PreprocessSpec | None = Field(
        default=None, description="what the model does to raw inputs before the backbone; "
        "filled in by training from the `data:` section (docs/training.md)")
    backbone: list[AnyBlock] = Field(
        default_factory=list, description="the blocks applied in order; a bare name (`- relu`) for a block with all defaults")
    head: HeadSpec | None = Field(
        None, description="one classifier head (the model returns a tensor of logits)")
    heads: dict[str, HeadSpec] | None = Field(
        None, description="named classifier heads (the model returns a dict of logits by name)")
    weights: WeightsSpec | None = Field(
        None, description="weights imported when the model is built (torchvision's, timm's, another run's)")

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

    @model_validator(mode="wrap")
    @classmethod
    def _input_required(cls, data: Any, handler: Any) -> ModelSpec:
        """Neither `input` nor `inputs`: reported as a missing `input` (the common form)."""
        if isinstance(data, dict) and "input" not in data and "inputs" not in data:
            raise ValidationError.from_exception_data(
                cls.__name__, [InitErrorDetails(type="missing", loc=("input",), input=data)])
        return handler(data)

    @model_validator(mode="after")
    def _one_input_form(self) -> ModelSpec:
        if (self.input is None) == (self.inputs is None):
            raise ValueError("give exactly one of `input` (one tensor) or `inputs` (named inputs)")
        if self.inputs is not None:
            check_input_names(self.inputs)
            if self.preprocess is not None:
                raise ValueError("`preprocess` is for one input; each of `inputs` has its own")
        elif self.combine is not None:
            raise ValueError("`combine` goes with `inputs` (several named inputs)")
        return self

    @model_validator(mode="after")
    def _one_head_form(self) -> ModelSpec:
        if (self.head is None) == (self.heads is None):
            raise ValueError("give exactly one of `head` (a single head) or `heads` (named heads)")
        return self

    @model_validator(mode="after")
    def _preprocess_fits(self) -> ModelSpec:
        if self.preprocess is not None and self.input is not None:
            if self.input.dtype == "int64":
                raise ValueError("`preprocess` needs a floating-point input; an int64 input "
                                 "(token ids) is fed as it is")
            problem = self.preprocess.check_fits(tuple(self.input.shape))
            if problem:
                raise ValueError(f"preprocess: {problem}")
        return self

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Per-sample shape of what the built model takes: the raw shape when it preprocesses."""
        if self.inputs is not None:
            raise SpecError(Problem("model.inputs", "a multi-input model takes a dict of tensors "
                                    "keyed by input name (see `input_shapes`)", "multi_input"))
        return tuple(self.preprocess.raw_shape if self.preprocess else self.input.shape)

    @property
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-sample shape of each named input (a one-input model: `{"input": shape}`)."""
        if self.inputs is None:
            return {"input": self.sample_shape}
        return {name: tuple(spec.sample_shape) for name, spec in self.inputs.items()}

    @property
    def multi_input(self) -> bool:
        return self.inputs is not None

    @property
    def combiner(self):
        """`combine`, or the default `concat`."""
        if self.combine is not None:
            return self.combine
        return combiner_types()["concat"]()

    @property
    def multi_head(self) -> bool:
        return self.heads is not None

    @property
    def head_specs(self) -> dict[str, SoftmaxHead | SigmoidHead]:
        """Heads by name; a lone `head` is named `output`."""
        return dict(self.heads) if self.heads is not None else {SINGLE_HEAD: self.head}

    def infer_shapes(self, prefix: str = "model") -> ShapeReport:
        """Static shape inference for every block and head; a located `SpecError` if impossible."""
        check_blocks(self, prefix)  # before any shape rule runs: `repeat` of 10**9 is refused here
        traced = None
        if self.inputs is not None:
            traced = trace_inputs(self.inputs, self.combiner, prefix)
            input_shape = traced.combined
        else:
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
        return ShapeReport(input_shape, layers, features, heads, traced)

