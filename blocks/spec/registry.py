"""Block types by name: the built-in catalogue, `@register_block` and installed plugins.

A block type is a pydantic model (its parameters) that also knows two things: its per-sample
output shape for a given input shape, and how to build its `nn.Module` for that input shape.
Registering a type makes recipes, validation, the JSON Schema and summaries accept it.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    GetJsonSchemaHandler,
    SerializeAsAny,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    create_model,
    model_serializer,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from blocks.core.errors import RegistryError
from blocks.core.numbers import mark_booleans
from blocks.spec.shapes import Shape

if TYPE_CHECKING:
    from torch import nn

ENTRY_POINT_GROUP = "blocks.blocks"


class SpecModel(BaseModel):
    """Base of every spec model: unknown keys are errors, assignments are validated, floats finite."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data: Any) -> Any:
        """`lr: true` is an error at `lr`, not a learning rate of 1.0 (see `numbers.Boolean`)."""
        return mark_booleans(cls.model_fields, data)


class Block(SpecModel):
    """Base class of block types. Subclass it, add torch-named fields, implement the two rules.

    `type` is filled in by `register_block`; users never write it in Python.
    """

    type: str
    #: True when every field has a default, so a bare `- relu` in YAML is a whole block.
    shorthand: ClassVar[bool] = False
    #: the documented example `blocks blocks TYPE` shows: (per-sample input shape, the block as
    #: a recipe writes it), plus the output shape when it is stated rather than computed (an
    #: external backbone). None: a bare name on the first input shape the type accepts.
    example: ClassVar[tuple[Any, ...] | None] = None

    def output_shape(self, shape: Shape) -> Shape:
        """Per-sample output shape for per-sample input `shape`; raise `ShapeError` if impossible.

        Every registered type overrides this (`register_block` checks it).
        """
        raise TypeError(f"block type {self.type!r} does not define output_shape")

    def build(self, shape: Shape) -> nn.Module:
        """Create the module for per-sample input `shape` (already checked by `output_shape`).

        Every registered type overrides this (`register_block` checks it).
        """
        raise TypeError(f"block type {self.type!r} does not define build")

    def parameter_count(self, shape: Shape) -> tuple[int, int] | None:
        """(parameters, buffer values) of the module `build(shape)` makes, from the spec alone.

        Optional: the default, None, means unknown, and the size check builds the block on the
        `meta` device to count (exact, but it needs torch and costs a build). Every built-in
        type gives the exact numbers (`blocks.spec.counts` has the arithmetic of torch's layers).
        """
        return None

    @model_serializer(mode="wrap")
    def _keep_type(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if not isinstance(data, dict):
            return data
        data.pop("type", None)
        if not data:  # nothing but the tag: dump as the bare-name shorthand
            return self.type
        return {"type": self.type, **data}


BlockT = TypeVar("BlockT", bound=type[Block])

_BLOCK_TYPES: dict[str, type[Block]] = {}
_plugins_loaded = False


def register_block(name: str, *, replace: bool = False) -> Callable[[type[Block]], type[Block]]:
    """Class decorator: make `name` a block type usable in recipes.

    Returns a subclass whose `type` field is `Literal[name]`, so the class validates its own tag.
    A clash with an existing name is an error unless `replace=True` (for tests and notebooks).
    """
    if not name.isidentifier() or name != name.lower():
        raise RegistryError(f"block type name {name!r} must be a lower-case identifier")

    def decorate(cls: type[Block]) -> type[Block]:
        if not (isinstance(cls, type) and issubclass(cls, Block)):
            raise RegistryError(f"@register_block({name!r}) needs a blocks.Block subclass, got {cls!r}")
        existing = _BLOCK_TYPES.get(name)
        if existing is not None and not replace:
            raise RegistryError(
                f"block type {name!r} is already registered by "
                f"{existing.__module__}.{existing.__qualname__}; pick another name"
            )
        missing = [rule for rule in ("output_shape", "build") if getattr(cls, rule) is getattr(Block, rule)]
        if missing:
            raise RegistryError(f"@register_block({name!r}): {cls.__qualname__} must define "
                                f"{' and '.join(missing)} (its shape rule and its module)")
        registered = create_model(
            cls.__name__,
            __base__=cls,
            __module__=cls.__module__,
            __doc__=cls.__doc__,
            type=(Literal[name], name),  # type: ignore[valid-type]
        )
        registered.__qualname__ = cls.__qualname__
        registered.shorthand = not any(
            field.is_required() for key, field in registered.model_fields.items() if key != "type"
        )
        _BLOCK_TYPES[name] = registered
        return registered

    return decorate


def unregister_block(name: str) -> None:
    """Remove a block type (tests, notebooks re-running a cell)."""
    _BLOCK_TYPES.pop(name, None)


def load_plugins() -> list[str]:
    """Import every module advertised in the `blocks.blocks` entry-point group (once).

    A plugin that fails to import is reported as a warning naming it, never breaks `import blocks`.
    """
    global _plugins_loaded
    if _plugins_loaded:
        return []
    _plugins_loaded = True
    loaded = []
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            target = entry.load()
        except Exception as err:  # noqa: BLE001 - a broken plugin must not break blocks
            warnings.warn(f"blocks plugin {entry.name!r} ({entry.value}) failed to load: {err}",
                          stacklevel=2)
            continue
        if isinstance(target, type) and issubclass(target, Block) and target.__name__ not in {
            t.__name__ for t in _BLOCK_TYPES.values()
        }:
            register_block(entry.name)(target)
        loaded.append(entry.name)
    return loaded


def block_types() -> dict[str, type[Block]]:
    """All registered block types, by name (a copy)."""
    return dict(_BLOCK_TYPES)


def get_block_type(name: str) -> type[Block]:
    try:
        return _BLOCK_TYPES[name]
    except KeyError:
        raise RegistryError(unknown_name_message("block type", name, _BLOCK_TYPES)) from None


def closest(name: str, candidates: Iterator[str] | list[str] | dict[str, Any]) -> str | None:
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_name_message(kind: str, name: object, candidates: Any) -> str:
    """`unknown block type 'conv3d'; did you mean 'conv2d' or 'conv1d'? (...)`: the closest few
    names, and the whole list only when it is short."""
    names = sorted(candidates)
    hints = difflib.get_close_matches(str(name), names, n=3 if kind == "block type" else 1,
                                      cutoff=0.6)
    quoted = [repr(h) for h in hints]
    suggestion = (f"; did you mean {', '.join(quoted[:-1])} or {quoted[-1]}?" if len(hints) > 1 else
                  f"; did you mean {quoted[0]}?" if hints else "")
    if kind == "block type":
        listing = f"`blocks blocks` lists all {len(names)}"
    else:
        listing = f"valid: {', '.join(names)}" if len(names) <= 12 else f"{len(names)} valid names"
    return f"unknown {kind} {name!r}{suggestion} ({listing})"


def _validate_block(value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Block:
    """Dispatch a block on its `type` tag to the registered class (registry read at call time)."""
    if isinstance(value, Block):
        return value
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, dict):
        raise PydanticCustomError(
            "block_invalid",
            "expected a block: a mapping with a `type` key, or a bare type name like `relu`",
        )
    tag = value.get("type")
    if tag is None:
        typo = next((key for key in value if isinstance(key, str) and closest(key, ["type"])), None)
        if typo is not None:
            raise PydanticCustomError("block_type_missing", "block has no `type`; did you mean "
                                      "`type` instead of `{typo}`?", {"typo": typo})
        raise PydanticCustomError("block_type_missing", "block has no `type`; write "
                                  "`{type: conv2d, ...}` or a bare name like `relu` (`blocks "
                                  "blocks` lists the {count} types)", {"count": len(_BLOCK_TYPES)})
    if not isinstance(tag, str) or tag not in _BLOCK_TYPES:
        raise PydanticCustomError("block_type_unknown", unknown_name_message("block type", tag, _BLOCK_TYPES),
                                  {"tag": str(tag), "expected": sorted(_BLOCK_TYPES)})
    return _BLOCK_TYPES[tag].model_validate(value, context=info.context)


def block_def_name(name: str) -> str:
    return f"block.{name}"


class _AnyBlockSchema:
    """JSON Schema of "any registered block": references to one definition per block type,
    filled in by `add_block_definitions` so plugins registered later appear too."""

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        # A placeholder pydantic does not try to resolve; `add_block_definitions` swaps in $refs.
        options: list[dict[str, Any]] = [{_PLACEHOLDER: name} for name in sorted(_BLOCK_TYPES)]
        bare = sorted(name for name, t in _BLOCK_TYPES.items() if t.shorthand)
        options.append({"type": "string", "enum": bare, "description": "a block whose fields all have defaults"})
        return {"anyOf": options}


_PLACEHOLDER = "x-blocks-block-type"


def add_block_definitions(schema: dict[str, Any]) -> dict[str, Any]:
    """Put every registered block type's schema under `$defs` and point the block lists at them."""
    defs = schema.setdefault("$defs", {})
    for name, block_type in sorted(_BLOCK_TYPES.items()):
        sub = block_type.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(sub.pop("$defs", {}))
        defs[block_def_name(name)] = sub
    return _swap_placeholders(schema)


def _swap_placeholders(node: Any) -> Any:
    if isinstance(node, dict):
        if set(node) == {_PLACEHOLDER}:
            return {"$ref": f"#/$defs/{block_def_name(node[_PLACEHOLDER])}"}
        return {key: _swap_placeholders(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_swap_placeholders(item) for item in node]
    return node


AnyBlock = Annotated[SerializeAsAny[Block], WrapValidator(_validate_block), _AnyBlockSchema]
