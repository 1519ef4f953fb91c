"""What every lint rule shares: the finding it reports and the classes it looks at.

A rule is a function from a parsed file (in its file set) to findings. Each is deliberately
narrow: a finding must be a real bug in ordinary code; where the code alone cannot tell (a layer
class held in a variable, a parameter that may be a list), the rule says nothing.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator

from blocks.lint.context import ClassInfo, FileContext
from blocks.lint.report import Finding

Check = Callable[[FileContext], Iterator[Finding]]


def finding(ctx: FileContext, node: ast.AST, code: str, message: str) -> Finding:
    """A finding of rule `code` at `node` (1-based column, as editors count)."""
    line = getattr(node, "lineno", 1)
    col = getattr(node, "col_offset", 0) + 1
    return Finding(path=ctx.path, line=line, column=col, code=code, message=message)


def module_classes(ctx: FileContext) -> Iterator[ClassInfo]:
    """The `nn.Module` subclasses defined in this file (bases resolved across the file set)."""
    assert ctx.project is not None
    yield from ctx.project.module_classes(ctx)


def layer_text(kind: str, name: str) -> str:
    """How a message names a layer: `nn.Linear`, `nn.Parameter`, or a user's class by name."""
    return "nn.Parameter" if kind == "parameter" else (f"nn.{name}" if kind != "user" else name)

