"""Recipe text to plain Python data with the position of every value, in bounded time and memory.

Recipes are untrusted input. Everything here fails as a located `SpecError` (file:line:col):
- files over `BLOCKS_MAX_RECIPE_BYTES` (default 10 MB) are refused before reading them whole,
  text that is not UTF-8 is reported at the line and column of the first bad byte;
- nesting deeper than `MAX_YAML_DEPTH`, more than `MAX_YAML_NODES` values once aliases are
  expanded ("billion laughs"), and aliases that contain themselves are refused while reading;
- only plain data is accepted: mappings, lists, text, decimal integers that fit in 64 bits,
  floats, `true`/`false`, `null`. Any other tag (`!!python/...`, `!!set`) is an error, `yes`/`no`
  and dates stay text (YAML 1.2), and YAML 1.1 octal/hex/sexagesimal integers (`010`, `1:30`)
  are refused rather than read as numbers nobody meant.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from blocks.core.errors import Problem, SpecError
from blocks.core.limits import MAX_YAML_DEPTH, MAX_YAML_NODES, max_recipe_bytes

Loc = tuple[str | int, ...]

_YAML = "tag:yaml.org,2002:"
MERGE, MAP, SEQ = f"{_YAML}merge", f"{_YAML}map", f"{_YAML}seq"
STR, INT, FLOAT, BOOL, NULL = (f"{_YAML}{name}" for name in ("str", "int", "float", "bool", "null"))
_DECIMAL = re.compile(r"[-+]?(?:0|[1-9][0-9_]*)")
_INT64 = 2**63 - 1


@dataclass
class Positions:
    """Where each value (and each mapping key) of a parsed YAML document starts, 1-based."""

    values: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Loc, tuple[int, int]] = field(default_factory=dict)

    def find(self, loc: Loc, *, key: bool = False) -> tuple[int, int] | None:
        if key and loc in self.keys:
            return self.keys[loc]
        while loc not in self.values and loc:
            loc = loc[:-1]
        return self.values.get(loc)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe composer with a cap on nesting depth and on the number of nodes.

    (The composer is recursive: without the cap, 10,000 nested lists are a RecursionError.)
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        self._nodes += 1
        if self._nodes > MAX_YAML_NODES:
            raise _TooBig(_too_many_values(), event.start_mark)
        if not isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            return super().compose_node(parent, index)
        if self._depth >= MAX_YAML_DEPTH:
            raise _TooBig(_too_deep(), event.start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


# YAML 1.2 booleans only (`yes`, `no`, `on`, `off` stay text), and no implicit timestamps
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (BOOL, f"{_YAML}timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
# YAML 1.2 floats: `1e-3` and `1.0e400` are numbers (YAML 1.1 wants a dot and a signed exponent,
# so PyYAML reads them as text, which strict number fields then refuse)
_Loader.add_implicit_resolver(
    FLOAT, re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


class _TooBig(yaml.MarkedYAMLError):
    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem=problem, problem_mark=mark)


def _too_deep() -> str:
    return (f"the recipe nests more than {MAX_YAML_DEPTH} levels of mappings and lists; no recipe "
            "needs that many")


def _too_many_values() -> str:
    return (f"the recipe holds more than {MAX_YAML_NODES:,} values, counting each use of a YAML "
            "alias (`*name`) in full (aliases that repeat other aliases grow exponentially)")


# --- reading ----------------------------------------------------------------------------------
def read_recipe_file(path: Path, shown: str) -> str:
    """The text of a recipe file: size-limited before reading, UTF-8 errors located."""
    try:
        if path.is_dir():
            raise SpecError(Problem("", "is a folder, not a recipe file", "file_unreadable", shown))
        if not path.is_file():
            raise SpecError(Problem("", "is not a regular file (a device, pipe or socket); "
                                    "give a recipe file", "file_unreadable", shown))
        limit = max_recipe_bytes()
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as err:
        raise SpecError(Problem("", f"cannot read recipe: {err.strerror or err}", "file_unreadable",
                                shown)) from None
    if len(data) > limit:
        raise SpecError(Problem("", f"the recipe file is larger than {limit:,} bytes; recipes are "
                                "small text files (set BLOCKS_MAX_RECIPE_BYTES to raise the limit)",
                                "file_too_large", shown, 1, 1))
    return decode_utf8(data, shown)


def decode_utf8(data: bytes, shown: str | None) -> str:
    """UTF-8 text (a leading BOM dropped); a bad byte is reported at its line and column."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        line_start = data.rfind(b"\n", 0, err.start) + 1
        column = len(data[line_start:err.start].decode("utf-8", errors="replace")) + 1
        raise SpecError(Problem("", f"not UTF-8 text: byte 0x{data[err.start]:02x} at byte offset "
                                f"{err.start} ({err.reason}); recipes are UTF-8 text files",
                                "not_utf8", shown, line, column)) from None


def check_text_size(text: str, shown: str | None) -> None:
    limit = max_recipe_bytes()
    if len(text) > limit or len(text.encode("utf-8", errors="surrogatepass")) > limit:
        raise SpecError(Problem("", f"the recipe text is larger than {limit:,} bytes (set "
                                "BLOCKS_MAX_RECIPE_BYTES to raise the limit)", "file_too_large",
                                shown, 1, 1))


# --- parsing ----------------------------------------------------------------------------------
def parse_yaml(text: str, source: str | None) -> tuple[Any, Positions]:
    """Plain data and the position of every value; a located `SpecError` for any problem."""
    check_text_size(text, source)
    try:
        _prescan(text)
        loader = _Loader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.reader.ReaderError as err:
        line, column = _line_col(text, err.position)
        char = err.character if isinstance(err.character, str) else chr(err.character)
        raise SpecError(Problem("", f"invalid character U+{ord(char):04X} ({_char_kind(char)}); YAML "
                                "text may not contain it (inside double quotes, write an escape "
                                f"such as \"\\u{ord(char):04x}\" if you mean it)", "yaml_character",
                                source, line, column)) from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        message = " ".join(filter(None, [err.context, err.problem]))
        kind = "yaml_too_big" if isinstance(err, _TooBig) else "yaml_syntax"
        if kind == "yaml_syntax" and "'\\t'" in message:
            message = ("a tab character: YAML indents with spaces only; replace the tab with "
                       "spaces (set your editor to insert spaces for .yaml files)")
        elif kind == "yaml_syntax" and "mapping values are not allowed here" in message:
            message += ("; check the indentation of this line and the one above (a nested key "
                        "needs more spaces than its parent)")
        raise SpecError(Problem("", f"invalid YAML: {message}" if kind == "yaml_syntax" else message,
                                kind, source, mark.line + 1 if mark else None,
                                mark.column + 1 if mark else None)) from None
    except yaml.YAMLError as err:
        raise SpecError(Problem("", f"invalid YAML: {err}", "yaml_syntax", source)) from None
    if root is None:
        raise SpecError(Problem("", "the recipe is empty; expected a mapping with a `model:` section",
                                "empty_recipe", source, 1, 1))
    positions = Positions()
    return _Converter(positions, source).convert(root, ()), positions


def _prescan(text: str) -> None:
    """With libyaml, count values and nesting in C first: a 10 MB hostile file then fails in a
    fraction of a second rather than after many seconds of pure-Python composing. Any other
    problem is left to the Python reader, which reports it with its position."""
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is None or len(text) < 100_000:
        return
    depth = nodes = 0
    try:
        for event in yaml.parse(text, Loader=fast):
            if isinstance(event, yaml.NodeEvent):  # scalars, aliases, collection starts
                nodes += 1
                if nodes > MAX_YAML_NODES:
                    raise _TooBig(_too_many_values(), event.start_mark)
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    raise _TooBig(_too_deep(), event.start_mark)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except _TooBig:
        raise
    except Exception:  # noqa: BLE001, S110 - reported precisely by the pure-Python pass
        return


def _line_col(text: str, position: int) -> tuple[int, int]:
    line = text.count("\n", 0, position) + 1
    return line, position - (text.rfind("\n", 0, position) + 1) + 1


def _char_kind(char: str) -> str:
    code = ord(char)
    if 0xD800 <= code <= 0xDFFF:
        return "a lone surrogate, not a Unicode character"
    if code in (0xFFFE, 0xFFFF):
        return "a Unicode noncharacter"
    if code < 0x20 or 0x7F <= code < 0xA0:
        return "a control character"
    return "not printable"


class _Converter:
    """Nodes to Python values, counting every value visited (aliases included) against the cap."""

    def __init__(self, positions: Positions, source: str | None) -> None:
        self.positions = positions
        self.source = source
        self.visited = 0
        self.active: set[int] = set()  # collections being converted: an alias to one is a cycle
        self.floats = yaml.SafeLoader("")

    def fail(self, node: yaml.Node, loc: Loc, message: str, kind: str) -> SpecError:
        mark = node.start_mark
        return SpecError(Problem(_path(loc), message, kind, self.source, mark.line + 1,
                                 mark.column + 1))

    def convert(self, node: yaml.Node, loc: Loc) -> Any:
        self.visited += 1
        if self.visited > MAX_YAML_NODES:
            raise self.fail(node, loc, _too_many_values(), "yaml_too_big")
        self.positions.values[loc] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, loc)
        if id(node) in self.active:
            raise self.fail(node, loc, "this alias refers to a mapping or list that contains it; "
                                       "a recipe must be finite", "yaml_recursive_alias")
        if len(self.active) >= MAX_YAML_DEPTH:
            raise self.fail(node, loc, _too_deep(), "yaml_too_big")
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                if node.tag != MAP:
                    raise self.fail(node, loc, _tag_message(node.tag), "yaml_tag")
                return self.mapping(node, loc)
            if node.tag != SEQ:
                raise self.fail(node, loc, _tag_message(node.tag), "yaml_tag")
            return [self.convert(item, (*loc, i)) for i, item in enumerate(node.value)]
        finally:
            self.active.discard(id(node))

    def mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        merged: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == MERGE:
                merged = {**self.merged(value_node, loc), **merged}  # an earlier merge key wins
        self.positions.values[loc] = (node.start_mark.line + 1, node.start_mark.column + 1)
        for key_node, value_node in node.value:
            if key_node.tag == MERGE:
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(key_node, loc, "mapping keys must be plain names", "yaml_key")
            key = self.scalar(key_node, loc)
            where = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if not isinstance(key, str | int | float | bool) or key is None:
                raise self.fail(key_node, loc, "mapping keys must be plain names", "yaml_key")
            if key in result:
                raise self.fail(key_node, (*loc, key), f"duplicate key {key!r} (the first is on "
                                f"line {self.positions.keys[(*loc, key)][0]})", "duplicate_key")
            self.positions.keys[(*loc, key)] = where
            result[key] = self.convert(value_node, (*loc, key))
        # keys written here override merged ones (YAML merge rules); merged keys come first
        return {**{k: v for k, v in merged.items() if k not in result}, **result}

    def merged(self, value: yaml.Node, loc: Loc) -> dict[Any, Any]:
        """The mapping(s) a merge key (`<<: *base` or `<<: [*a, *b]`) brings in."""
        sources = value.value if isinstance(value, yaml.SequenceNode) else [value]
        out: dict[Any, Any] = {}
        for source in reversed(sources):  # in a list, the first mapping wins
            if not isinstance(source, yaml.MappingNode):
                kind = "a list" if isinstance(source, yaml.SequenceNode) else f"{source.value!r}"
                raise self.fail(source, loc, f"a merge key `<<` takes a mapping or a list of "
                                f"mappings (e.g. `<<: *base`), got {kind}", "yaml_merge")
            found = self.convert(source, loc)
            out.update(found)
        return out

    def scalar(self, node: yaml.ScalarNode, loc: Loc) -> Any:
        tag, text = node.tag, node.value
        if tag == STR:
            bad = next((c for c in text if 0xD800 <= ord(c) <= 0xDFFF), None)
            if bad is not None:
                raise self.fail(node, loc, f"text holds U+{ord(bad):04X}, a lone surrogate (not a "
                                           "Unicode character)", "yaml_character")
            return text
        if tag == NULL:
            return None
        if tag == BOOL:
            value = yaml.SafeLoader.bool_values.get(text.lower())
            if value is None:
                raise self.fail(node, loc, f"{text!r} is not true or false", "yaml_value")
            return value
        if tag == INT:
            return self.integer(node, loc)
        if tag == FLOAT:
            if ":" in text:
                raise self.fail(node, loc, f"`{text}` is a YAML 1.1 base-60 number; write it in "
                                           "plain decimal, or quote it to make it text", "yaml_number")
            try:
                return self.floats.construct_yaml_float(node)
            except ValueError:
                raise self.fail(node, loc, f"{text!r} is not a number", "yaml_value") from None
        raise self.fail(node, loc, _tag_message(tag), "yaml_tag")

    def integer(self, node: yaml.ScalarNode, loc: Loc) -> int:
        text = node.value.strip()
        if not _DECIMAL.fullmatch(text):
            raise self.fail(node, loc, f"`{text[:40]}` is not a plain decimal integer (YAML 1.1 reads "
                                       "leading zeros as octal, `0x` as hex, `1:30` as base 60); "
                                       "write it in decimal without leading zeros, or quote it "
                                       "to make it text", "yaml_number")
        digits = text.replace("_", "").lstrip("+-")
        if len(digits) > 19 or int(digits) > _INT64:
            shown = digits if len(digits) <= 30 else f"{digits[:12]}...({len(digits)} digits)"
            raise self.fail(node, loc, f"integer {shown} is out of range: recipe integers fit in "
                                       "64 bits (at most 2**63 - 1)", "yaml_number")
        return int(text.replace("_", ""))


def _tag_message(tag: str) -> str:
    shown = tag.replace(_YAML, "!!")
    return (f"YAML tag {shown!r} is not allowed: recipes are plain data (mappings, lists, text, "
            "numbers, true/false, null)")


def _path(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
