"""`model.inputs:` and `model.combine:`: several raw inputs, an encoder each, one combiner.

A multi-input model is `inputs -> encoder per input -> combine -> backbone -> heads`. Each input
has a `kind` that fixes what the model receives per sample (float features, one category id,
`max_length` token ids, an image, a float sequence) and a default encoder when none is given.
Shapes are inferred statically across every input, so a mistake in one encoder is reported at
its spec path (`model.inputs.review.encoder[1]: ...`) before anything is built.

Tokenisation and category vocabularies are data-side (`blocks.data.text`,
`blocks.data.multi_table`): the model takes ids. Combiner types register here
(`register_combiner`); the built-in ones live in `blocks.layers.combiners`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import (
    Field,
    GetJsonSchemaHandler,
    SerializeAsAny,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    create_model,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from blocks.core.errors import Problem, RegistryError, ShapeError, SpecError
from blocks.core.numbers import Size, size_type
from blocks.spec.registry import AnyBlock, Block, SpecModel, get_block_type, unknown_name_message
from blocks.spec.shapes import Shape, fmt_shape
from blocks.spec.trace import LayerTrace, trace_sequence

if TYPE_CHECKING:
    from torch import nn

KINDS = ("numeric", "categorical", "text", "image", "sequence")
PAD_ID, UNKNOWN_ID = 0, 1
MAX_TEXT_LENGTH = 1 << 16  # tokens per text: a typo of 10**9 must not allocate rows x 10**9 ids  # text: [PAD] and [UNK]; categorical: 0 is unknown / missing


class _Input(SpecModel):
    """What every input kind shares: the column(s) it is read from and its encoder."""

    encoder: list[AnyBlock] | None = Field(
        default=None, description="blocks applied to this input alone, ending in one feature "
        "vector per sample; default: the kind's encoder (docs/multi_input.md)")

    dtype: ClassVar[str] = "float32"

    @property
    @abstractmethod
    def sample_shape(self) -> Shape:
        """The per-sample shape of this input's raw tensor, as the model takes it."""

    def default_encoder(self) -> list[dict[str, Any]]:
        return []

    def encoder_blocks(self) -> list[Block]:
        """The encoder as written, or the kind's default."""
        if self.encoder is not None:
            return list(self.encoder)
        return [get_block_type(b["type"]).model_validate(b) for b in self.default_encoder()]

    @property
    def source_columns(self) -> list[str]:
        return []


class NumericInput(_Input):
    """Float columns, standardised with the training split's mean and std (stored here)."""

    kind: Literal["numeric"] = Field(description="what the input holds (fixes its default encoder)")
    columns: Annotated[list[str], Field(min_length=1)] | None = Field(
        default=None, description="the table's columns, in order (a CSV source)")
    features: Size | None = Field(default=None, description="the number of features, when fed "
                                  "as tensors without columns")
    standardize: bool = Field(default=True, description="z-score with training statistics")
    mean: list[float] | None = Field(default=None, description="filled in by training")
    std: list[float] | None = Field(default=None, description="filled in by training")

    @model_validator(mode="after")
    def _size(self) -> NumericInput:
        if self.columns is None and self.features is None:
            raise ValueError("give `columns` (the table's columns) or `features` (their number)")
        if self.columns is not None and self.features is not None and self.features != len(self.columns):
            raise ValueError(f"`features` is {self.features} but {len(self.columns)} columns are named")
        n = self.sample_shape[0]
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"`{name}` has {len(value)} values for {n} features")
        if self.std is not None and min(self.std) <= 0:
            raise ValueError("`std` values must be positive")
        return self

    @property
    def sample_shape(self) -> Shape:
        return (len(self.columns) if self.columns is not None else self.features,)

    @property
    def source_columns(self) -> list[str]:
        return list(self.columns or [])


class CategoricalInput(_Input):
    """One column of category names, as an id (0: unknown or missing), embedded by default."""

    kind: Literal["categorical"] = Field(description="what the input holds (fixes its default encoder)")
    column: str | None = Field(default=None, description="the table's column")
    vocab_size: Size = Field(default=64, description="ids 0..vocab_size-1: at most vocab_size-1 "
                             "categories (0 is unknown / missing)")
    embedding_dim: Size = Field(default=8, description="the default encoder's vector length")
    categories: list[str] | None = Field(default=None, description="the category names (id 1, "
                                         "2, ...), filled in by training from the training split")
    dtype: ClassVar[str] = "int64"

    @model_validator(mode="after")
    def _fits(self) -> CategoricalInput:
        if self.categories is not None and len(self.categories) >= self.vocab_size:
            raise ValueError(f"{len(self.categories)} categories need vocab_size at least "
                             f"{len(self.categories) + 1} (id 0 is unknown), got {self.vocab_size}")
        return self

    @property
    def sample_shape(self) -> Shape:
        return (1,)

    def default_encoder(self) -> list[dict[str, Any]]:
        return [{"type": "embedding", "num_embeddings": self.vocab_size,
                 "embedding_dim": self.embedding_dim}, {"type": "flatten"}]

    @property
    def source_columns(self) -> list[str]:
        return [self.column] if self.column else []


class TokenizerSpec(SpecModel):
    """How text becomes token ids: trained on the training split, or a local tokenizer.json."""

    type: Literal["word", "bpe", "wordpiece", "file"] = Field(
        default="word", description="word-level, BPE or WordPiece trained on the training split, "
        "or `file`: a local Hugging Face tokenizer.json (no downloads)")
    path: str | None = Field(default=None, description="`file`: the tokenizer.json, relative to "
                             "the recipe")
    min_frequency: Size = Field(default=1, description="tokens seen fewer times are unknown")

    @model_validator(mode="after")
    def _path(self) -> TokenizerSpec:
        if (self.type == "file") != (self.path is not None):
            raise ValueError("`path` goes with `type: file` (a local tokenizer.json), and only there")
        return self


class TextInput(_Input):
    """A text column, tokenised to `max_length` ids (padded with 0, truncated), bag-of-words
    mean by default. The tokenizer is saved in the run folder (`tokenizer.<input>.json`)."""

    kind: Literal["text"] = Field(description="what the input holds (fixes its default encoder)")
    column: str | None = Field(default=None, description="the table's column")
    max_length: size_type(1, MAX_TEXT_LENGTH) = Field(
        default=64, description="tokens kept per text (truncated, padded); at most 65,536")
    vocab_size: Size = Field(default=8000, description="the tokenizer's vocabulary at most; "
                             "ids 0 ([PAD]) and 1 ([UNK]) included")
    lowercase: bool = Field(default=True, description="lower-case before tokenising")
    tokenizer: TokenizerSpec = Field(default_factory=TokenizerSpec,
                                     description="how the tokenizer is made")
    embedding_dim: Size = Field(default=32, description="the default encoder's vector length")
    dtype: ClassVar[str] = "int64"

    @model_validator(mode="after")
    def _vocab(self) -> TextInput:
        if self.vocab_size < 3:
            raise ValueError("vocab_size must leave room for [PAD], [UNK] and one token (>= 3)")
        return self

    @property
    def sample_shape(self) -> Shape:
        return (self.max_length,)

    def default_encoder(self) -> list[dict[str, Any]]:
        return [{"type": "bag_of_words", "num_embeddings": self.vocab_size,
                 "embedding_dim": self.embedding_dim}]

    @property
    def source_columns(self) -> list[str]:
        return [self.column] if self.column else []


class ImageInput(_Input):
    """An image `[C, H, W]` (a path column, relative to the table; decoded like image folders)."""

    kind: Literal["image"] = Field(description="what the input holds (fixes its default encoder)")
    column: str | None = Field(default=None, description="the column of image paths")
    shape: Annotated[list[Size], Field(min_length=3, max_length=3)] = Field(
        description="[channels, height, width] the model takes")

    @property
    def sample_shape(self) -> Shape:
        return tuple(self.shape)

    def default_encoder(self) -> list[dict[str, Any]]:
        return [{"type": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1},
                {"type": "relu"}, {"type": "global_avgpool"}]

    @property
    def source_columns(self) -> list[str]:
        return [self.column] if self.column else []


class SequenceInput(_Input):
    """A float sequence `[length, features]` (fed as tensors), mean over time by default."""

    kind: Literal["sequence"] = Field(description="what the input holds (fixes its default encoder)")
    shape: Annotated[list[Size], Field(min_length=2, max_length=2)] = Field(
        description="[length, features] per sample")

    @property
    def sample_shape(self) -> Shape:
        return tuple(self.shape)

    def default_encoder(self) -> list[dict[str, Any]]:
        return [{"type": "token_mean"}]


ModelInput = Annotated[NumericInput | CategoricalInput | TextInput | ImageInput | SequenceInput,
                       Field(discriminator="kind")]


# --- combiners --------------------------------------------------------------------------------
class Combiner(SpecModel):
    """Base of combiner types: encoded inputs (one vector each, in input order) -> one vector."""

    type: str

    def combined_shape(self, shapes: dict[str, Shape]) -> Shape:
        raise TypeError(f"combiner {self.type!r} does not define combined_shape")

    def parameter_count(self, shapes: dict[str, Shape]) -> tuple[int, int]:
        return 0, 0

    def build(self, shapes: dict[str, Shape]) -> nn.Module:
        raise TypeError(f"combiner {self.type!r} does not define build")


_COMBINERS: dict[str, type[Combiner]] = {}


def register_combiner(name: str) -> Callable[[type[Combiner]], type[Combiner]]:
    """Class decorator: `name` becomes a `combine: {type: name}` choice."""

    def decorate(cls: type[Combiner]) -> type[Combiner]:
        if name in _COMBINERS:
            raise RegistryError(f"combiner {name!r} is already registered")
        registered = create_model(cls.__name__, __base__=cls, __module__=cls.__module__,
                                  __doc__=cls.__doc__, type=(Literal[name], name))
        registered.__qualname__ = cls.__qualname__
        _COMBINERS[name] = registered
        return registered

    return decorate


def combiner_types() -> dict[str, type[Combiner]]:
    return dict(_COMBINERS)


def _validate_combiner(value: Any, handler: ValidatorFunctionWrapHandler,
                       info: ValidationInfo) -> Combiner:
    if isinstance(value, Combiner):
        return value
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, dict):
        raise PydanticCustomError("combiner_invalid", "expected a combiner: `concat`, or a "
                                  "mapping with a `type` key")
    tag = value.get("type", "concat")
    if tag not in _COMBINERS:
        raise PydanticCustomError("combiner_unknown", unknown_name_message("combiner", tag, _COMBINERS))
    return _COMBINERS[tag].model_validate({**value, "type": tag}, context=info.context)


class _AnyCombinerSchema:
    @classmethod
    def __get_pydantic_json_schema__(cls, schema: core_schema.CoreSchema,
                                     handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {"anyOf": [{"type": "string", "enum": sorted(_COMBINERS)},
                          {"type": "object", "properties": {"type": {"enum": sorted(_COMBINERS)}}}],
                "description": "how the encoded inputs become one vector"}


AnyCombiner = Annotated[SerializeAsAny[Combiner], WrapValidator(_validate_combiner), _AnyCombinerSchema]


def check_input_names(inputs: dict[str, Any]) -> None:
    if not inputs:
        raise ValueError("`inputs` is empty; name at least one input")
    for name in inputs:
        if not name.isidentifier():
            raise ValueError(f"input name {name!r} must be an identifier (letters, digits, _)")


# --- shape inference across inputs -----------------------------------------------------------
@dataclass(frozen=True)
class InputsTrace:
    """Each input's sample shape, its encoder's traces and output, the combined vector."""

    samples: dict[str, Shape]
    encoders: dict[str, list[LayerTrace]]
    encoded: dict[str, Shape]
    combined: Shape


def trace_inputs(inputs: dict[str, _Input], combine: Combiner, prefix: str) -> InputsTrace:
    """Static shapes of every encoder and of the combiner; every failing input reported at once."""
    samples, encoders, encoded, problems = {}, {}, {}, []
    for name, spec in inputs.items():
        where = f"{prefix}.inputs.{name}.encoder"
        samples[name] = spec.sample_shape
        blocks = spec.encoder_blocks()
        problem = _vocabulary_problem(spec, blocks, where)
        if problem is not None:
            problems.append(problem)
            continue
        try:
            layers, out = trace_sequence(blocks, spec.sample_shape, f"inputs.{name}.encoder")
        except ShapeError as err:
            problems.append(Problem(f"{where}{err.path}", err.describe(), "shape_error"))
            continue
        if len(out) != 1:
            problems.append(Problem(where, f"gives {fmt_shape(out)} per sample; the combiner takes "
                                    "one feature vector per input: end the encoder with `flatten`, "
                                    "`global_avgpool` or `token_mean`", "shape_error"))
            continue
        encoders[name], encoded[name] = layers, out
    if problems:
        raise SpecError(problems)
    try:
        combined = combine.combined_shape(encoded)
    except ShapeError as err:
        raise SpecError(Problem(f"{prefix}.combine", err.reason, "shape_error")) from None
    return InputsTrace(samples, encoders, encoded, combined)


def _vocabulary_problem(spec: _Input, blocks: list[Block], where: str) -> Problem | None:
    """An embedding smaller than the ids the input produces would fail at the first batch."""
    vocab = getattr(spec, "vocab_size", None)
    if vocab is None or not blocks:
        return None
    rows = getattr(blocks[0], "num_embeddings", None)
    if rows is not None and rows < vocab:
        return Problem(f"{where}[0].num_embeddings", f"{rows} rows for ids up to {vocab - 1} (the "
                       f"input's vocab_size is {vocab}); give num_embeddings: {vocab}", "shape_error")
    return None
