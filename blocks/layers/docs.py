"""What a block type is, in words: one-line summary, fields, shape rule and an example.

Read from the registry, each type's JSON Schema and its `example` class attribute at call time,
so `blocks blocks`, the docs site's recipe reference and plugins registered later all describe
the same thing the validator checks. The shape line is *computed* from the example with the
type's own `output_shape` (external backbones state theirs: it needs their library).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from blocks.core.errors import BlocksError
from blocks.spec.registry import Block, block_types, get_block_type

# Each type's example is its class attribute `example` (see `Block.example`), written in its
# family file; a type without one gets `- name` on the first of these input shapes it accepts.
_TRY_SHAPES: tuple[list[int], ...] = ([16, 8, 8], [64], [17, 64])


@dataclass(frozen=True)
class FieldDoc:
    name: str
    type: str
    default: str  # "required" for a field without one
    description: str


@dataclass(frozen=True)
class BlockDoc:
    name: str
    summary: str  # the docstring's first sentence
    doc: str  # the whole docstring, dedented
    fields: list[FieldDoc]
    example: dict[str, Any] | str | None  # a block as YAML writes it (a bare name if shorthand)
    input_shape: list[int] | None
    output_shape: list[int] | None
    module: str

    @property
    def shape_line(self) -> str:
        """`[1, 28, 28] -> [32, 26, 26]` for the example, or the reason there is none."""
        if self.input_shape is None or self.output_shape is None:
            return "(no example: see the description)"
        return f"{self.input_shape} -> {self.output_shape}"

    @property
    def example_yaml(self) -> str:
        """The example as one YAML flow line, the way recipes write blocks."""
        if self.example is None:
            return ""
        return f"- {_flow(self.example)}"


def _flow(value: Any) -> str:
    """YAML flow style with bare keys and strings: `{type: conv2d, out_channels: 32}`."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value) if isinstance(value, int | float) or str(value).isidentifier() else json.dumps(value)


def summary_of(cls: type) -> str:
    """The first sentence of a docstring, on one line."""
    text = " ".join((cls.__doc__ or "").split())
    if not text:
        return ""
    end = text.find(". ")
    return text if end < 0 else text[:end + 1]


def type_text(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    """A JSON Schema property as a short type: `integer | list[integer]`, `'zeros' | 'reflect'`."""
    refs = _dispatched(prop)
    if refs:
        names = [r.rsplit("/", 1)[-1] for r in refs]
        text = "block" if all(n.startswith("block.") for n in names) else " | ".join(names)
        kinds = prop.get("type") if isinstance(prop.get("type"), list) else []
        return text + (" | name" if "string" in kinds and text != "block" else "") + (
            " | null" if "null" in kinds else "")
    if isinstance(prop.get("type"), list):
        return " | ".join(prop["type"])
    if prop.get("if") == {"type": "null"} and isinstance(prop.get("else"), dict):
        return f"{type_text(prop['else'], defs)} | null"  # an optional section
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[-1]
        return "block" if name.startswith("block.") else name
    if "const" in prop:
        return repr(prop["const"])
    if "enum" in prop:
        return " | ".join(repr(v) if isinstance(v, str) else str(v) for v in prop["enum"])
    for key in ("anyOf", "oneOf"):
        if key in prop:
            parts = [type_text(p, defs) for p in prop[key]]
            if any(p.get(_PLACEHOLDER) for p in prop[key]) or len(parts) > 6:
                return "block"
            return " | ".join(dict.fromkeys(parts))
    kind = prop.get("type")
    if kind == "array":
        return f"list[{type_text(prop.get('items', {}), defs)}]"
    if kind == "object":
        return "mapping"
    return {"null": "null"}.get(kind, kind or "any")


_PLACEHOLDER = "x-blocks-block-type"


def _dispatched(prop: dict[str, Any]) -> list[str]:
    """The member schemas of a union dispatched on `type` (see blocks.spec.schema_tags)."""
    for key in ("else", "then"):
        if isinstance(prop.get(key), dict) and "if" in prop:
            found = _dispatched(prop[key])
            if found:
                return found
    return [part["then"]["$ref"] for part in prop.get("allOf", [])
            if isinstance(part, dict) and "$ref" in part.get("then", {})]


def describe(name: str) -> BlockDoc:
    """Everything `blocks blocks NAME` prints about a registered block type."""
    cls = get_block_type(name)
    schema = cls.model_json_schema()
    defs = schema.get("$defs", {})
    fields = []
    for key, info in cls.model_fields.items():
        if key == "type":
            continue
        prop = schema.get("properties", {}).get(key, {})
        if info.is_required():
            default = "required"
        else:
            value = info.get_default(call_default_factory=True)
            default = _flow(value.model_dump(mode="json") if hasattr(value, "model_dump") else value)
        fields.append(FieldDoc(key, type_text(prop, defs), default,
                               " ".join((info.description or "").split())))
    example, input_shape, output_shape = _example(name, cls)
    return BlockDoc(name, summary_of(cls), _dedent(cls.__doc__), fields, example, input_shape,
                    output_shape, cls.__module__)


def _dedent(doc: str | None) -> str:
    import inspect

    return inspect.cleandoc(doc or "")


def _example(name: str, cls: type[Block]) -> tuple[Any, list[int] | None, list[int] | None]:
    example = cls.example
    if example is not None and len(example) == 3:  # stated: the output needs a library loaded
        shape, spec, out = example
        return spec, list(shape), list(out)
    candidates = ([(example[0], example[1])] if example is not None else
                  [(shape, {"type": name}) for shape in _TRY_SHAPES] if cls.shorthand else [])
    for shape, spec in candidates:
        try:
            block = cls.model_validate(spec)
            out = block.output_shape(tuple(shape))
        except (BlocksError, ValueError, TypeError):
            continue
        shown: Any = name if spec == {"type": name} else spec
        return shown, list(shape), list(out)
    return None, None, None


def catalogue() -> list[BlockDoc]:
    """Every registered block type, by name."""
    return [describe(name) for name in sorted(block_types())]
