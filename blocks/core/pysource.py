"""Python expressions as data, for the plain-PyTorch source export: literals, calls that break
over lines like a formatter would, and quoting.

Torch-free and below every sub-package, so a block family's `emit_source` method can write its
module's construction expression without importing `blocks.exporters` (which imports torch and
the builder). `blocks.exporters.source_writer` re-exports every name here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Any

from blocks.core.errors import ExportError

LINE_LENGTH = 88  # the generated file keeps to the formatters' default


def literal(value: Any, where: str) -> str:
    """A Python literal that evaluates to `value` (numbers, strings, None, tuples, lists)."""
    if isinstance(value, str):
        return quote(value)
    if value is None or isinstance(value, (bool, int)):
        return repr(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else f'float("{value}")'
    if isinstance(value, (tuple, list)):
        items = [literal(v, where) for v in value]
        if isinstance(value, list):
            return "[" + ", ".join(items) + "]"
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    raise ExportError(f"{where} = {value!r} ({type(value).__name__}) cannot be written as a "
                      "Python literal")


@dataclass(frozen=True)
class Call:
    """`func(arg, ...)` (or a dict / list display): rendered on one line when it fits, else one
    argument per line, like a code formatter would."""

    func: str
    args: tuple[Expr, ...]
    opener: str = "("
    closer: str = ")"

    def flat(self) -> str:
        return f"{self.func}{self.opener}{', '.join(flat(a) for a in self.args)}{self.closer}"


Expr = str | Call


def call(func: str, args: list[Expr] | tuple[Expr, ...], opener: str = "(",
         closer: str = ")") -> Call:
    return Call(func, tuple(args), opener, closer)


def flat(expr: Expr) -> str:
    return expr if isinstance(expr, str) else expr.flat()


def prefixed(prefix: str, expr: Expr) -> Expr:
    """`prefix` written before `expr` (e.g. a dict key), keeping `expr` breakable."""
    return prefix + expr if isinstance(expr, str) else replace(expr, func=prefix + expr.func)


def render(expr: Expr, indent: int, start: int, tail: int = 0) -> str:
    """`expr` as text starting at column `start` on a line indented by `indent`, followed by
    `tail` characters; lines after the first carry their indentation."""
    one_line = flat(expr)
    if isinstance(expr, str) or start + len(one_line) + tail <= LINE_LENGTH:
        return one_line
    inner = indent + 4
    body = "".join(" " * inner + render(arg, inner, inner, 1) + ",\n" for arg in expr.args)
    return f"{expr.func}{expr.opener}\n{body}{' ' * indent}{expr.closer}"


def quote(text: str) -> str:
    """A double-quoted Python string literal (JSON string escapes are Python's too)."""
    return json.dumps(text, ensure_ascii=False)


def number(value: Any) -> float:
    """The shortest decimal that gives back the tensor element `value` in its own dtype."""
    import torch  # only emitters call this, on a built module: torch is loaded already

    exact = value.item()
    for digits in range(1, 18):
        short = float(f"{exact:.{digits}g}")
        if torch.tensor(short, dtype=value.dtype) == value:
            return short
    return exact
