"""`--set KEY=VALUE` overrides: any recipe key, validated like the recipe's own keys.

`train.optimizer.lr=3e-4`, `model.head.classes=5`, `model.backbone[0].out_channels=16`. Values are
YAML (`[3, 3]`, `true`, `{type: cosine}`), with `3e-4` read as the number it means (YAML 1.1
would keep it a string). The whole recipe is validated again, so a bad key gets the same
did-you-mean as in a file, and each problem names the `--set` it came from.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from blocks.core.errors import Problem, SpecError
from blocks.recipe.loading import load_recipe
from blocks.spec.recipe import Recipe

_SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_set(text: str) -> tuple[tuple[str | int, ...], Any]:
    """`train.optimizer.lr=3e-4` -> (("train", "optimizer", "lr"), 0.0003)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SpecError(Problem("", "expected KEY=VALUE, e.g. --set train.optimizer.lr=3e-4",
                                "bad_argument", _flag(text)))
    path: list[str | int] = []
    position = 0
    for match in _PART.finditer(key):
        between = key[position:match.start()]
        if between not in ("", "."):
            break
        path.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        position = match.end()
    if position != len(key) or not path or not isinstance(path[0], str):
        raise SpecError(Problem("", f"{key!r} is not a key path like train.optimizer.lr or "
                                "model.backbone[0].out_channels", "bad_argument", _flag(text)))
    path = [int(p) if isinstance(p, str) and p.isdigit() else p for p in path]
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise SpecError(Problem("", f"the value is not valid YAML: {' '.join(str(err).split())}",
                                "bad_argument", _flag(text))) from None
    return tuple(path), as_number(value)


@dataclass(frozen=True)
class Override:
    """One recipe key set to a value, and where the setting came from: a `--set` flag
    (`file` is the flag's text) or a line of a file such as a sweep's space file."""

    path: tuple[str | int, ...]
    value: Any
    file: str
    line: int | None = None
    column: int | None = None

    def problem(self, path: str, message: str, kind: str) -> Problem:
        return Problem(path, message, kind, self.file, self.line, self.column)


def apply_sets(recipe: Recipe, sets: Sequence[str]) -> Recipe:
    """The recipe with every `KEY=VALUE` applied, validated as a whole."""
    if not sets:
        return recipe
    return apply_overrides(recipe, [Override(*parse_set(text), _flag(text)) for text in sets])


def apply_overrides(recipe: Recipe, overrides: Sequence[Override]) -> Recipe:
    """The recipe with every override applied, validated as a whole; each problem is located
    at the override it comes from (the flag, or the file, line and column)."""
    if not overrides:
        return recipe
    data = recipe.model_dump(mode="json", exclude_none=True)
    written = recipe.model_dump(mode="json", exclude_none=True, exclude_unset=True)
    for override in overrides:
        _put(data, override, written)
    try:
        updated = load_recipe(data)
    except SpecError as err:
        raise SpecError([_blame(problem, overrides) for problem in err.problems]) from None
    updated._source_path = recipe.source_path
    return updated


def _put(data: dict[str, Any], override: Override, written: dict[str, Any]) -> None:
    path, value = override.path, override.value
    node: Any = data
    for depth, part in enumerate(path[:-1]):
        following = path[depth + 1]
        if isinstance(part, int):
            if not isinstance(node, list) or not -len(node) <= part < len(node):
                raise SpecError(_out_of_range(path[:depth], node, part, override))
            if isinstance(node[part], str) and isinstance(following, str):
                node[part] = {"type": node[part]}  # `- relu` gets a key: a mapping now
            node = node[part]
            continue
        if not isinstance(node, dict):
            raise SpecError(override.problem(_dotted(path[:depth]), "is not a mapping",
                                             "bad_argument"))
        child = node.get(part)
        if child is None or isinstance(child, str) and isinstance(following, str):
            node[part] = {"type": child} if isinstance(child, str) else (
                [] if isinstance(following, int) else {})
        node = node[part]
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or not -len(node) <= last < len(node):
            raise SpecError(_out_of_range(path[:-1], node, last, override))
    elif not isinstance(node, dict):
        raise SpecError(override.problem(_dotted(path[:-1]), "is not a mapping", "bad_argument"))
    if last == "type" and node.get("type") not in (None, value):
        # another type (`train.optimizer.type=adam` on sgd): the old type's defaults (momentum)
        # go, the keys the recipe itself wrote stay and are checked against the new type
        node.clear()
        node.update(_written_at(written, path[:-1]))
    node[last] = value


def _written_at(written: Any, path: tuple[str | int, ...]) -> dict[str, Any]:
    node = written
    for part in path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return {}
        if isinstance(node, str):
            node = {"type": node}
    return {k: v for k, v in node.items() if k != "type"} if isinstance(node, dict) else {}


def _out_of_range(where: tuple[str | int, ...], node: Any, index: int,
                  override: Override) -> Problem:
    size = len(node) if isinstance(node, list) else 0
    return override.problem(_dotted(where), f"has {size} entries, no [{index}]", "bad_argument")


def dotted(path: tuple[str | int, ...]) -> str:
    """(("model", "backbone", 0, "out_features")) -> "model.backbone[0].out_features"."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


_dotted = dotted


def _blame(problem: Problem, overrides: Sequence[Override]) -> Problem:
    """Name the override a problem comes from (the longest key path it lies under)."""
    owners = [o for o in overrides
              if problem.path == _dotted(o.path) or problem.path.startswith(_dotted(o.path) + ".")
              or problem.path.startswith(_dotted(o.path) + "[")
              or _dotted(o.path).startswith(problem.path + ".") and problem.type == "extra_forbidden"]
    if not owners and len(overrides) == 1:
        owners = list(overrides)  # one override: whatever broke, it did
    if owners:
        return owners[0].problem(problem.path, problem.message, problem.type)
    files = list(dict.fromkeys(o.file for o in overrides))  # every flag, or the one file
    return Problem(problem.path, problem.message, problem.type, ", ".join(files))


def _flag(*texts: str) -> str:
    """Where a problem is: the flag, as a recipe problem names its file."""
    return ", ".join(f"--set {text}" for text in texts)


def as_number(value: Any) -> Any:
    """`"3e-4"` (text to YAML 1.1 and to the bounded recipe reader) -> 0.0003; anything else as is."""
    if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
        return float(value)
    return value
