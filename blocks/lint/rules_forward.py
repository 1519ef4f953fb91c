"""Rules BLK006-BLK008, pitfalls 3, 4 and 6: what the code computes with tensors.

Builtin `sum`/`max`/`min` over a tensor (a Python loop over its first axis), tensor factories in
`forward` without `device=` (CPU tensors next to a GPU model), and softmax/sigmoid outputs fed
to a loss that applies the activation again.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from blocks.lint.context import (
    ClassInfo,
    FileContext,
    is_forward_name,
    is_self_attr,
    scopes,
)
from blocks.lint.report import Finding
from blocks.lint.rules_common import finding, module_classes
from blocks.lint.tensors import ScopeNames, TensorOracle, scope_names
from blocks.lint.torch_names import FACTORIES


# BLK006 ------------------------------------------------------------------------------------
def check_builtin_reduction(ctx: FileContext) -> Iterator[Finding]:
    """Builtin sum/max/min loop over a tensor's first dimension in Python: slow, and not .sum()."""
    builtins = {n for n in ("sum", "max", "min") if ctx.is_builtin(n)}
    if not builtins:
        return
    class_of: dict[int, ClassInfo] = {}
    assert ctx.project is not None
    for cls in ctx.project.module_classes(ctx):
        for method in cls.methods():
            class_of[id(method)] = cls
    for scope in scopes(ctx.tree):
        oracle: TensorOracle | None = None
        for node in ctx.scope_nodes(scope):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in builtins
                and not node.keywords
            ):
                continue
            name = node.func.id
            if name == "sum" and len(node.args) not in (1, 2) or name != "sum" and len(node.args) != 1:
                continue
            if isinstance(node.args[0], ast.Starred):
                continue
            oracle = oracle or TensorOracle(ctx, scope, class_of.get(id(scope)))
            if oracle.is_tensor(node.args[0]):
                method = {"sum": ".sum()", "max": ".max() or .amax(dim)",
                          "min": ".min() or .amin(dim)"}[name]
                yield finding(
                    ctx, node, "BLK006",
                    f"builtin {name}() on a tensor loops over its first dimension in Python "
                    f"(slow, and not a full reduction for 2-D or more); use tensor{method}",
                )


# BLK007 ------------------------------------------------------------------------------------
def _parents(tree: ast.AST) -> dict[int, ast.AST]:
    out: dict[int, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            out[id(child)] = node
    return out


_MOVERS = ("to", "cuda", "type_as", "to_device")


def _is_number(node: ast.expr) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        node = node.operand
    return isinstance(node, ast.Constant) and isinstance(node.value, (int, float, bool))


def _in_index(node: ast.AST, parents: dict[int, ast.AST]) -> bool:
    """Is `node` (part of) the index of a subscript, `x[node]` or `x[:, node]`?"""
    child, parent = node, parents.get(id(node))
    while isinstance(parent, ast.Tuple):
        child, parent = parent, parents.get(id(parent))
    return isinstance(parent, ast.Subscript) and parent.slice is child


def _only_used_as_index(call: ast.Call, method: ast.AST, parents: dict[int, ast.AST]) -> bool:
    if _in_index(call, parents):
        return True
    parent = parents.get(id(call))
    if not (isinstance(parent, ast.Assign) and len(parent.targets) == 1
            and isinstance(parent.targets[0], ast.Name)):
        return False
    name = parent.targets[0].id
    uses = [n for n in ast.walk(method)
            if isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Load)]
    return bool(uses) and all(_in_index(u, parents) for u in uses)


def check_factory_device(ctx: FileContext) -> Iterator[Finding]:
    """A tensor made in forward without device= lands on the CPU while the model may not be."""
    for cls in module_classes(ctx):
        for method in cls.methods():
            if not is_forward_name(method.name):
                continue
            parents = _parents(method)
            for node in ast.walk(method):
                if not isinstance(node, ast.Call):
                    continue
                name = ctx.torch_attr(node.func, "torch")
                if name not in FACTORIES:
                    continue
                kws = {kw.arg for kw in node.keywords}
                if "device" in kws or "out" in kws or None in kws:
                    continue
                if name in ("tensor", "scalar_tensor") and node.args and _is_number(node.args[0]):
                    continue  # a 0-d CPU tensor mixes with tensors on any device
                parent = parents.get(id(node))
                if isinstance(parent, ast.Attribute) and parent.attr in _MOVERS:
                    continue  # torch.arange(n).to(x.device)
                if _only_used_as_index(node, method, parents):
                    continue  # x[torch.arange(n)]: CPU index tensors work on any device
                yield finding(
                    ctx, node, "BLK007",
                    f"torch.{name}(...) in {cls.name}.{method.name}() without device=: it is "
                    "created on the CPU and breaks once the model is on a GPU; pass "
                    f"device=x.device (or use torch.{name}_like / x.new_{name})"
                    if name in ("zeros", "ones", "empty", "full") else
                    f"torch.{name}(...) in {cls.name}.{method.name}() without device=: it is "
                    "created on the CPU and breaks once the model is on a GPU; pass "
                    "device=x.device",
                )


# BLK008 ------------------------------------------------------------------------------------
_ACTIVATIONS = ("softmax", "sigmoid")
_LOGIT_LOSSES = {"cross_entropy": "F.cross_entropy",
                 "binary_cross_entropy_with_logits": "F.binary_cross_entropy_with_logits"}
_LOSS_CLASSES = ("CrossEntropyLoss", "BCEWithLogitsLoss")


def _activation(ctx: FileContext, expr: ast.expr, names: ScopeNames,
                self_attrs: dict[str, list[ast.expr]], depth: int = 0) -> str | None:
    """"softmax"/"sigmoid" if `expr` is the output of one (call, method, layer or local)."""
    if depth > 8:
        return None
    if isinstance(expr, ast.Call):
        for ns in ("torch", "torch.nn.functional", "torch.special"):
            name = ctx.torch_attr(expr.func, ns)
            if name in _ACTIVATIONS or name == "expit":
                return "sigmoid" if name == "expit" else name
        func = expr.func
        if (
            isinstance(func, ast.Attribute)
            and func.attr in _ACTIVATIONS
            and not is_self_attr(func)
            and not (ctx.resolve(func) or "").startswith("torch.")
        ):
            return func.attr  # x.softmax(dim=1)
        layer = _callee_layer(ctx, expr.func, names, self_attrs)
        if layer in ("Softmax", "Sigmoid"):
            return layer.lower()
    if isinstance(expr, ast.Name):
        values = names.only_values(expr.id)
        if values:
            acts = [_activation(ctx, v, names, self_attrs, depth + 1) for v in values]
            if all(acts):
                return acts[0]
    return None


def _callee_layer(ctx: FileContext, func: ast.expr, names: ScopeNames,
                  self_attrs: dict[str, list[ast.expr]]) -> str | None:
    """The torch.nn class behind a called object: `nn.X(...)(...)`, `self.x(...)`, `x(...)`."""
    values: list[ast.expr] | None = None
    if isinstance(func, ast.Call):
        values = [func]
    elif is_self_attr(func):
        values = self_attrs.get(func.attr)  # type: ignore[attr-defined]
    elif isinstance(func, ast.Name):
        values = names.only_values(func.id)
    if not values:
        return None
    layers = {ctx.layer_of_call(v) for v in values}
    if len(layers) == 1:
        layer = layers.pop()
        if layer is not None and layer[0] in ("stateful", "stateless"):
            return layer[1]
    return None


def check_double_activation(ctx: FileContext) -> Iterator[Finding]:
    """softmax/sigmoid fed to a loss that applies it again: gradients vanish, training stalls."""
    assert ctx.project is not None
    class_of: dict[int, ClassInfo] = {}
    for cls in ctx.project.module_classes(ctx):
        for method in cls.methods():
            class_of[id(method)] = cls
    for scope in scopes(ctx.tree):
        names: ScopeNames | None = None
        cls = class_of.get(id(scope))
        self_attrs = cls.self_assignments() if cls is not None else {}
        for node in ctx.scope_nodes(scope):
            if not isinstance(node, ast.Call):
                continue
            loss = ctx.torch_attr(node.func, "torch.nn.functional")
            if loss in _LOGIT_LOSSES:
                loss_text = _LOGIT_LOSSES[loss]
            else:
                names = names or scope_names(ctx, scope)
                layer = _callee_layer(ctx, node.func, names, self_attrs)
                if layer not in _LOSS_CLASSES:
                    continue
                loss_text = f"nn.{layer}"
            arg = node.args[0] if node.args else next(
                (kw.value for kw in node.keywords if kw.arg == "input"), None)
            if arg is None:
                continue
            names = names or scope_names(ctx, scope)
            act = _activation(ctx, arg, names, self_attrs)
            if act:
                applies = "sigmoid" if "inary" in loss_text or "BCE" in loss_text else "log_softmax"
                yield finding(
                    ctx, node, "BLK008",
                    f"{act} output passed to {loss_text}, which applies {applies} itself: the "
                    "activation is applied twice and gradients shrink; pass the raw logits",
                )
