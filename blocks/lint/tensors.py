"""Conservative "is this expression a tensor?" for one scope, from the code alone.

Only what is certain counts: torch/functional calls known to return one tensor, tensor methods
on tensors, arithmetic on tensors, and local names whose every assignment is such an
expression. Function parameters, loop variables and unknown calls are never tensors here.
"""

from __future__ import annotations

import ast

from blocks.lint.context import ClassInfo, FileContext, assignment_pairs, is_self_attr, walk_scope
from blocks.lint.torch_names import (
    FUNCTIONAL_TENSOR_FUNCS,
    TENSOR_METHODS,
    TORCH_TENSOR_FUNCS,
    TUPLE_OUTPUT_LAYERS,
)

_MAX_DEPTH = 12


def scope_names(ctx: FileContext, scope: ast.AST) -> ScopeNames:
    """The (cached) local-name table of one scope."""
    key = ("names", id(scope))
    if key not in ctx.cache:
        ctx.cache[key] = ScopeNames(scope, ctx.scope_nodes(scope))
    return ctx.cache[key]  # type: ignore[return-value]


class ScopeNames:
    """Local names of one scope and every value assigned to them (None: bound another way)."""

    def __init__(self, scope: ast.AST, nodes: list[ast.AST] | None = None) -> None:
        self.values: dict[str, list[ast.expr | None]] = {}
        if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = scope.args
            for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
                if a is not None:
                    self.values.setdefault(a.arg, []).append(None)
        for node in nodes if nodes is not None else walk_scope(scope):
            pairs = list(assignment_pairs(node))
            for target, value in pairs:
                if isinstance(target, ast.Name):
                    self.values.setdefault(target.id, []).append(value)
                else:
                    self._bind_other(target)
            if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
                self.values.setdefault(node.target.id, []).append(
                    ast.BinOp(left=node.target, op=node.op, right=node.value)
                )
            elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
                self._bind_other(node.target)
            elif isinstance(node, (ast.With, ast.AsyncWith)):
                for item in node.items:
                    if item.optional_vars is not None:
                        self._bind_other(item.optional_vars)
            elif isinstance(node, ast.NamedExpr):
                self.values.setdefault(node.target.id, []).append(node.value)
            elif isinstance(node, (ast.Global, ast.Nonlocal)):
                for name in node.names:
                    self.values.setdefault(name, []).append(None)
            elif isinstance(node, ast.ExceptHandler) and node.name:
                self.values.setdefault(node.name, []).append(None)

    def _bind_other(self, target: ast.AST) -> None:
        for sub in ast.walk(target):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                self.values.setdefault(sub.id, []).append(None)

    def only_values(self, name: str) -> list[ast.expr] | None:
        """Every value bound to `name` if all are plain assignments, else None."""
        values = self.values.get(name)
        if not values or any(v is None for v in values):
            return None
        return values  # type: ignore[return-value]


class TensorOracle:
    """Answers "certainly a tensor?" for expressions of one scope in one file (and class)."""

    def __init__(self, ctx: FileContext, scope: ast.AST, cls: ClassInfo | None = None) -> None:
        self.ctx = ctx
        self.names = scope_names(ctx, scope)
        self.self_attrs = cls.self_assignments() if cls is not None else {}

    def is_tensor(self, expr: ast.expr, depth: int = 0, seen: frozenset[str] = frozenset()) -> bool:
        if depth > _MAX_DEPTH:
            return False
        rec = lambda e: self.is_tensor(e, depth + 1, seen)  # noqa: E731
        if isinstance(expr, ast.Call):
            if self.ctx.torch_attr(expr.func, "torch") in TORCH_TENSOR_FUNCS:
                return True
            if self.ctx.torch_attr(expr.func, "torch.nn.functional") in FUNCTIONAL_TENSOR_FUNCS:
                return True
            if isinstance(expr.func, ast.Attribute) and expr.func.attr in TENSOR_METHODS:
                return rec(expr.func.value)
            return self._is_tensor_layer_call(expr)
        if isinstance(expr, ast.BinOp):
            return rec(expr.left) or rec(expr.right)
        if isinstance(expr, ast.UnaryOp) and not isinstance(expr.op, ast.Not):
            return rec(expr.operand)
        if isinstance(expr, ast.Subscript):
            return rec(expr.value)
        if isinstance(expr, ast.Attribute) and expr.attr in ("T", "mT", "data"):
            return rec(expr.value)
        if isinstance(expr, ast.Name) and expr.id not in seen:
            values = self.names.only_values(expr.id)
            if values is None:
                return False
            inner = seen | {expr.id}
            return all(self.is_tensor(v, depth + 1, inner) for v in values)
        return False

    def _is_tensor_layer_call(self, call: ast.Call) -> bool:
        """`self.fc(x)` where `self.fc = nn.Linear(...)`, or `nn.Linear(...)(x)`: a tensor."""
        func = call.func
        if isinstance(func, ast.Call):
            return self._layer_gives_tensor(func)
        if is_self_attr(func):
            values = self.self_attrs.get(func.attr)  # type: ignore[attr-defined]
            return bool(values) and all(self._layer_gives_tensor(v) for v in values)
        return False

    def _layer_gives_tensor(self, value: ast.expr) -> bool:
        layer = self.ctx.layer_of_call(value)
        return (
            layer is not None
            and layer[0] in ("stateful", "stateless")
            and layer[1] not in TUPLE_OUTPUT_LAYERS
        )
