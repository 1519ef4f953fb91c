"""Rules BLK004-BLK005, pitfall 2: state kept where `nn.Module` does not look.

Layers in a plain list, tuple, set or dict, and trainable tensors kept as plain attributes
instead of `nn.Parameter`: `parameters()`, `.to(device)` and `state_dict()` all miss them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from blocks.lint.context import (
    FileContext,
    assignment_pairs,
    is_self_attr,
)
from blocks.lint.report import Finding
from blocks.lint.rules_common import finding, layer_text, module_classes
from blocks.lint.tensors import ScopeNames, scope_names


# BLK004 ------------------------------------------------------------------------------------
def _module_valued(ctx: FileContext, expr: ast.expr, names: ScopeNames) -> str | None:
    """The layer class if `expr` is a stateful/user layer (or a local bound only to those)."""
    layer = ctx.layer_of_call(expr)
    if layer is not None and layer[0] in ("stateful", "user"):
        return layer_text(*layer)
    if isinstance(expr, ast.Name):
        values = names.only_values(expr.id)
        if values:
            found = [_module_valued(ctx, v, names) for v in values if v is not expr]
            if found and all(found):
                return found[0]
    return None


def _container_of_modules(
    ctx: FileContext, expr: ast.expr, names: ScopeNames
) -> tuple[str, str] | None:
    """(container kind, layer) when `expr` is a list/tuple/dict/set literal or comprehension of layers."""
    kinds = {ast.List: "list", ast.Tuple: "tuple", ast.Set: "set", ast.ListComp: "list",
             ast.SetComp: "set", ast.DictComp: "dict", ast.Dict: "dict"}
    kind = kinds.get(type(expr))  # type: ignore[call-overload]
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and expr.args:
        if expr.func.id in ("list", "tuple", "dict") and ctx.is_builtin(expr.func.id):
            inner = _container_of_modules(ctx, expr.args[0], names)
            return (expr.func.id, inner[1]) if inner else None
        return None
    if isinstance(expr, ast.GeneratorExp):
        kind = "generator"
    if kind is None:
        return None
    if isinstance(expr, (ast.List, ast.Tuple, ast.Set)):
        items = list(expr.elts)
    elif isinstance(expr, ast.Dict):
        items = list(expr.values)
    elif isinstance(expr, ast.DictComp):
        items = [expr.value]
    else:
        items = [expr.elt]  # type: ignore[attr-defined]
    for item in items:
        layer = _module_valued(ctx, item, names)
        if layer:
            return kind, layer
    return None


_FIX = {"list": "nn.ModuleList", "tuple": "nn.ModuleList", "set": "nn.ModuleList",
        "generator": "nn.ModuleList", "dict": "nn.ModuleDict"}


def check_plain_containers(ctx: FileContext) -> Iterator[Finding]:
    """Layers inside a plain list/dict are invisible to parameters(), .to() and state_dict()."""
    for cls in module_classes(ctx):
        plain: dict[str, str] = {}  # self attributes initialised as empty plain containers
        for method in cls.methods():
            names = scope_names(ctx, method)
            for node in ctx.scope_nodes(method):
                for target, value in assignment_pairs(node):
                    if not is_self_attr(target):
                        continue
                    attr = target.attr  # type: ignore[attr-defined]
                    hit = _container_of_modules(ctx, value, names)
                    if hit:
                        kind, layer = hit
                        yield finding(
                            ctx, target, "BLK004",
                            f"self.{attr} holds {layer} layers in a plain {kind}: they are not "
                            "registered, so parameters(), .to(device) and state_dict() miss "
                            f"them; use {_FIX[kind]}",
                        )
                    elif _is_empty_container(ctx, value):
                        plain[attr] = "dict" if _is_dict(value) else "list"
        for method in cls.methods():
            names = scope_names(ctx, method)
            for node in ctx.scope_nodes(method):
                hit = _fill_of_plain(ctx, node, plain, names)
                if hit is not None:
                    attr, layer = hit
                    yield finding(
                        ctx, node, "BLK004",
                        f"{layer} added to self.{attr}, a plain {plain[attr]}: it is not "
                        "registered, so parameters(), .to(device) and state_dict() miss it; "
                        f"make self.{attr} an {_FIX[plain[attr]]}",
                    )


def _is_empty_container(ctx: FileContext, value: ast.expr) -> bool:
    if isinstance(value, (ast.List, ast.Dict)) and not (
        value.elts if isinstance(value, ast.List) else value.keys
    ):
        return True
    return (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Name)
        and value.func.id in ("list", "dict")
        and ctx.is_builtin(value.func.id)
        and not value.args
        and not value.keywords
    )


def _is_dict(value: ast.expr) -> bool:
    return isinstance(value, ast.Dict) or (
        isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "dict"
    )


def _fill_of_plain(
    ctx: FileContext, node: ast.AST, plain: dict[str, str], names: ScopeNames
) -> tuple[str, str] | None:
    """`self.xs.append(layer)` / `self.xs[k] = layer` where self.xs is a plain container."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("append", "insert", "extend")
        and is_self_attr(node.func.value)
        and node.func.value.attr in plain  # type: ignore[attr-defined]
        and node.args
    ):
        arg = node.args[-1]
        if node.func.attr == "extend":
            inner = _container_of_modules(ctx, arg, names)
            layer = inner[1] if inner else None
        else:
            layer = _module_valued(ctx, arg, names)
        if layer:
            return node.func.value.attr, layer  # type: ignore[attr-defined]
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target = node.targets[0]
        if (
            isinstance(target, ast.Subscript)
            and is_self_attr(target.value)
            and target.value.attr in plain  # type: ignore[attr-defined]
        ):
            layer = _module_valued(ctx, node.value, names)
            if layer:
                return target.value.attr, layer  # type: ignore[attr-defined]
    return None


# BLK005 ------------------------------------------------------------------------------------
def _requires_grad_true(ctx: FileContext, value: ast.expr) -> bool:
    """`torch.f(..., requires_grad=True)` or `<expr>.requires_grad_()` / `(True)`."""
    if not isinstance(value, ast.Call):
        return False
    if ctx.torch_attr(value.func, "torch") is not None:
        for kw in value.keywords:
            if kw.arg == "requires_grad" and isinstance(kw.value, ast.Constant):
                return kw.value.value is True
    if isinstance(value.func, ast.Attribute) and value.func.attr == "requires_grad_":
        if not value.args and not value.keywords:
            return True
        arg = value.args[0] if value.args else value.keywords[0].value
        return isinstance(arg, ast.Constant) and arg.value is True
    return False


def check_grad_tensor_attribute(ctx: FileContext) -> Iterator[Finding]:
    """A trainable tensor kept as a plain attribute is not a parameter: no optimizer, no .to()."""
    for cls in module_classes(ctx):
        for method in cls.methods():
            for node in ctx.scope_nodes(method):
                for target, value in assignment_pairs(node):
                    if is_self_attr(target) and _requires_grad_true(ctx, value):
                        yield finding(
                            ctx, target, "BLK005",
                            f"self.{target.attr} is a tensor with requires_grad=True kept as a "  # type: ignore[attr-defined]
                            "plain attribute: parameters() and .to(device) miss it, so it is "
                            "never trained; wrap it: nn.Parameter(tensor)",
                        )
