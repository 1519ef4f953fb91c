"""`--set KEY=VALUE` overrides: any recipe key, validated like the recipe's own keys.

`train.optimizer.lr=3e-4`, `model.head.classes=5`, `model.backbone[0].out_channels=16`. Values are
YAML (`[3, 3]`, `true`, `{type: cosine}`), with `3e-4` read as the number it means (YAML 1.1
would keep it a string). The whole recipe is validated again, so a bad key gets the same
did-you-mean as in a file, and each problem names the `--set` it came from.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
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
    if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
        value = float(value)
    return tuple(path), value


def apply_sets(recipe: Recipe, sets: Sequence[str]) -> Recipe:
    """The recipe with every `KEY=VALUE` applied, validated as a whole."""
    if not sets:
        return recipe
    data = recipe.model_dump(mode="json", exclude_none=True)
    parsed = [(text, *parse_set(text)) for text in sets]
    for text, path, value in parsed:
        _put(data, path, value, text)
    try:
        updated = load_recipe(data)
    except SpecError as err:
        raise SpecError([_blame(problem, parsed) for problem in err.problems]) from None
    updated._source_path = recipe.source_path
    return updated


def _put(data: dict[str, Any], path: tuple[str | int, ...], value: Any, text: str) -> None:
    node: Any = data
    for depth, part in enumerate(path[:-1]):
        following = path[depth + 1]
        if isinstance(part, int):
            if not isinstance(node, list) or not -len(node) <= part < len(node):
                raise SpecError(_out_of_range(path[:depth], node, part, text))
            if isinstance(node[part], str) and isinstance(following, str):
                node[part] = {"type": node[part]}  # `- relu` gets a key: a mapping now
            node = node[part]
            continue
        if not isinstance(node, dict):
            raise SpecError(Problem(_dotted(path[:depth]), "is not a mapping", "bad_argument",
                                    _flag(text)))
        child = node.get(part)
        if child is None or isinstance(child, str) and isinstance(following, str):
            node[part] = {"type": child} if isinstance(child, str) else (
                [] if isinstance(following, int) else {})
        node = node[part]
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or not -len(node) <= last < len(node):
            raise SpecError(_out_of_range(path[:-1], node, last, text))
    elif not isinstance(node, dict):
        raise SpecError(Problem(_dotted(path[:-1]), "is not a mapping", "bad_argument",
                                _flag(text)))
    node[last] = value


def _out_of_range(where: tuple[str | int, ...], node: Any, index: int, text: str) -> Problem:
    size = len(node) if isinstance(node, list) else 0
    return Problem(_dotted(where), f"has {size} entries, no [{index}]", "bad_argument",
                   _flag(text))


def _dotted(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _blame(problem: Problem, parsed: list[tuple[str, tuple[str | int, ...], Any]]) -> Problem:
    """Name the `--set` a problem comes from (the longest key path it lies under)."""
    owners = [text for text, path, _ in parsed
              if problem.path == _dotted(path) or problem.path.startswith(_dotted(path) + ".")
              or problem.path.startswith(_dotted(path) + "[")
              or _dotted(path).startswith(problem.path + ".") and problem.type == "extra_forbidden"]
    flags = owners[:1] or [text for text, _, _ in parsed]
    return Problem(problem.path, problem.message, problem.type, _flag(*flags))


def _flag(*texts: str) -> str:
    """Where a problem is: the flag, as a recipe problem names its file."""
    return ", ".join(f"--set {text}" for text in texts)
