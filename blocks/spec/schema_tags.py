"""Tagged unions in the recipe JSON Schema, written so any JSON Schema validator dispatches on `type`.

pydantic marks its discriminated unions with OpenAPI's `discriminator` keyword, which plain JSON
Schema validators (the `jsonschema` package, editors' YAML servers) ignore: they try every member
and report why each failed ("not valid under any of the given schemas"). Here each union becomes
`if type is X then X's schema`, so a wrong field is reported once, against the member its `type`
names, and an unknown `type` is one `enum` error listing the valid names. A member without `type`
is invalid, as it is in `blocks`; unions that accept a bare name (`- relu`, `scheduler: cosine`)
accept a string too.
"""

from __future__ import annotations

from typing import Any

# unions whose members may be written as a bare name (every field of the member has a default)
BARE_NAME_UNIONS = ("Optimizer", "Scheduler")


def tag_unions(schema: dict[str, Any]) -> dict[str, Any]:
    """Rewrite `schema` in place (and return it): tagged unions dispatch on `type`."""
    defs = schema.get("$defs", {})
    for definition in defs.values():
        tag = definition.get("properties", {}).get("type", {})
        if "const" in tag and "type" not in definition.get("required", []):
            definition.setdefault("required", []).insert(0, "type")
    data = defs.get("DataSpec")
    if data is not None:
        one_source(data)
    return _walk(schema, defs)


def one_source(data: dict[str, Any]) -> None:
    """`data:` takes exactly one source (`dataset`, or a `*Source` section such as `csv`)."""
    sources = [key for key, prop in data.get("properties", {}).items()
               if key == "dataset" or any(o.get("$ref", "").endswith("Source")
                                          for o in prop.get("anyOf", [prop]))]
    data["oneOf"] = [{"required": [key], "properties": {key: {"not": {"type": "null"}}}}
                     for key in sources]


def _walk(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_walk(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    nullable = False
    options = node.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        inner = next(o for o in options if o != {"type": "null"})
        if "discriminator" in inner and "oneOf" in inner:  # `X | None`: fold the null in
            node = {**{k: v for k, v in node.items() if k != "anyOf"}, **inner}
            nullable = True
    node = {key: _walk(value, defs) for key, value in node.items()}
    options = node.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        inner = next(o for o in options if o != {"type": "null"})
        if set(inner) == {"$ref"}:  # `Section | None`: errors inside the section, not "any of"
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            return {**rest, "if": {"type": "null"}, "then": {"type": "null"}, "else": inner}
    if "discriminator" in node and "oneOf" in node:
        mapping = node["discriminator"]["mapping"]
        bare = node.get("title") in BARE_NAME_UNIONS
        rest = {k: v for k, v in node.items() if k not in ("discriminator", "oneOf")}
        key = node["discriminator"].get("propertyName", "type")
        return {**rest, **dispatch(mapping, defs, bare=bare, nullable=nullable, key=key)}
    options = node.get("anyOf")
    if isinstance(options, list) and options and all(
            "$ref" in o and o["$ref"].startswith("#/$defs/block.") or o.get("type") == "string"
            for o in options) and any("$ref" in o for o in options):
        mapping = {o["$ref"].rsplit("/block.", 1)[-1]: o["$ref"] for o in options if "$ref" in o}
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        return {**rest, **dispatch(mapping, defs, bare=True)}
    return node


def dispatch(mapping: dict[str, str], defs: dict[str, Any], *, bare: bool,
             nullable: bool = False, key: str = "type") -> dict[str, Any]:
    """`{type: X, ...}` validated by X's schema alone; a bare `X` where X needs no fields; null
    where the field is optional."""
    tags = sorted(mapping)
    as_object = {
        "type": "object",
        "required": [key],
        "properties": {key: {"enum": tags}},
        "allOf": [{"if": {"properties": {key: {"const": tag}}, "required": [key]},
                   "then": {"$ref": mapping[tag]}} for tag in tags],
    }
    kinds = ["object", *(["string"] if bare else []), *(["null"] if nullable else [])]
    if kinds == ["object"]:
        return as_object
    names = [tag for tag in tags if _all_defaults(defs.get(mapping[tag].rsplit("/", 1)[-1], {}))]
    objects = {"if": {"type": "object"}, "then": as_object}
    if not bare:
        return {"type": kinds, **objects}
    return {"type": kinds, "if": {"type": "string"},
            "then": {"enum": names, "description": "a bare name: the type with every default"},
            "else": objects}


def _all_defaults(definition: dict[str, Any]) -> bool:
    return not [name for name in definition.get("required", []) if name != "type"]
