"""Rules BLK001-BLK003, pitfall 1: layers created where or when `nn.Module` never registers them.

Built inside `forward` (fresh weights every call), in a method Python never calls (a misspelled
`__init__`), or before `super().__init__()` has created the registries.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from blocks.lint.context import (
    ClassInfo,
    FileContext,
    assignment_pairs,
    is_forward_name,
    is_self_attr,
    is_stub,
    walk_scope,
)
from blocks.lint.report import Finding
from blocks.lint.rules_common import finding, layer_text, module_classes
from blocks.lint.torch_names import MODULE_METHODS


# BLK001 ------------------------------------------------------------------------------------
def check_layer_in_forward(ctx: FileContext) -> Iterator[Finding]:
    """A layer built inside `forward` is rebuilt, with fresh random weights, on every call."""
    for cls in module_classes(ctx):
        for method in cls.methods():
            if not is_forward_name(method.name):
                continue
            for node in ast.walk(method):
                layer = ctx.layer_of_call(node)  # type: ignore[arg-type]
                if layer is None or layer[0] == "stateless":
                    continue
                text = layer_text(*layer)
                if layer[0] == "parameter":
                    why = "gets new values on every call and is never trained"
                elif layer[1].startswith(("Dropout", "AlphaDropout", "FeatureAlpha", "RReLU")):
                    why = "stays in training mode, so model.eval() cannot switch it off"
                else:
                    why = "gets fresh random weights on every call and is not in model.parameters()"
                yield finding(
                    ctx, node, "BLK001",
                    f"{text}(...) created inside {cls.name}.{method.name}(): it {why}; "
                    "create it once in __init__ as self.<name> and call it here",
                )


# BLK002 ------------------------------------------------------------------------------------
def _damerau(a: str, b: str) -> int:
    """Optimal-string-alignment edit distance (a transposition counts as one edit)."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def is_init_near_miss(name: str) -> bool:
    """`__int__`, `__init_`, `_init_`, `__inti__`, `__innit__`...: one or two edits from it."""
    if name == "__init__" or not name.startswith("_"):
        return False
    return _damerau(name, "__init__") <= 2


def _returns_value(func: ast.AST) -> bool:
    return any(isinstance(n, ast.Return) and n.value is not None for n in walk_scope(func))


def check_init(ctx: FileContext) -> Iterator[Finding]:
    """No `__init__` but a misspelled one (or layers assigned elsewhere): nothing is registered."""
    for cls in module_classes(ctx):
        if cls.method("__init__") is not None:
            continue
        near = [m for m in cls.methods() if is_init_near_miss(m.name) and not _returns_value(m)]
        for method in near:
            yield finding(
                ctx, method, "BLK002",
                f"{cls.name} has no __init__ but defines {method.name}(): Python never calls "
                "it, so no layer is registered; rename it to __init__",
            )
        if near or not _chain_has_no_init(cls):
            continue
        for method in cls.methods():
            if is_forward_name(method.name):
                continue  # BLK001 reports layers built in forward
            for node in ast.walk(method):
                for target, value in assignment_pairs(node):
                    layer = ctx.layer_of_call(value)
                    if is_self_attr(target) and layer and layer[0] != "stateless":
                        yield finding(
                            ctx, target, "BLK002",
                            f"self.{target.attr} = {layer_text(*layer)}(...) in "  # type: ignore[attr-defined]
                            f"{cls.name}.{method.name}(), but {cls.name} has no __init__: it is "
                            "created only if that method runs, after the optimizer may have "
                            "been built; create it in __init__",
                        )


def _chain_has_no_init(cls: ClassInfo) -> bool:
    """True when no class between `cls` and nn.Module (all in the file set) defines __init__."""
    project = cls.ctx.project
    assert project is not None
    for base in cls.bases:
        if base is None:
            return False
        if base in ("torch.nn.Module", "torch.nn.modules.Module", "torch.nn.modules.module.Module"):
            continue
        parent = project.find_class(base)
        if parent is None or parent is cls or parent.method("__init__") is not None:
            return False
        if not _chain_has_no_init(parent):
            return False
    return True


# BLK003 ------------------------------------------------------------------------------------
def _is_init_call(node: ast.AST) -> bool:
    """`super().__init__(...)`, `super(X, self).__init__(...)`, `Base.__init__(self, ...)`."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "__init__"
    )


def _registers_something(ctx: FileContext, node: ast.AST) -> ast.AST | None:
    """The node that needs Module.__init__ to have run: a layer/Parameter assignment or register."""
    for target, value in assignment_pairs(node):
        if is_self_attr(target) and ctx.layer_of_call(value) is not None:
            return target
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "self"
        and node.func.attr in ("register_buffer", "register_parameter", "add_module",
                               "register_module")
    ):
        return node
    return None


def _delegates_init(cls: ClassInfo, init: ast.AST) -> bool:
    """`self._init(...)` / `super()._init(...)` may call super().__init__(): true unless every
    such helper is known
    (in the class or its scanned bases) and none calls an `__init__`."""
    for node in cls.ctx.scope_nodes(init):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner = node.func.value
        is_super = isinstance(owner, ast.Call) and getattr(owner.func, "id", "") == "super"
        if not (is_self_attr(node.func) or is_super):
            continue
        if node.func.attr in MODULE_METHODS:  # type: ignore[attr-defined]
            continue
        helper = _find_method(cls, node.func.attr)  # type: ignore[attr-defined]
        if helper is None or any(_is_init_call(n) for n in ast.walk(helper)):
            return True
    return False


def _find_method(cls: ClassInfo, name: str, depth: int = 0) -> ast.AST | None:
    found = cls.method(name)
    if found is not None or depth > 10 or cls.ctx.project is None:
        return found
    for base in cls.bases:
        parent = cls.ctx.project.find_class(base) if base else None
        if parent is not None and parent is not cls:
            found = _find_method(parent, name, depth + 1)
            if found is not None:
                return found
    return None


def check_super_init(ctx: FileContext) -> Iterator[Finding]:
    """Module.__init__ creates the registries; without it (or before it) assignments fail."""
    for cls in module_classes(ctx):
        init = cls.method("__init__")
        if init is None or is_stub(init):
            continue
        calls = [n for n in ctx.scope_nodes(init) if _is_init_call(n)]
        if not calls and not _delegates_init(cls, init):
            yield finding(
                ctx, init, "BLK003",
                f"{cls.name}.__init__ never calls super().__init__(): nn.Module is not "
                "initialised, so assigning a layer raises and forward() fails; call "
                "super().__init__() first",
            )
        if not calls:
            continue
        first = min((c.lineno, c.col_offset) for c in calls)  # type: ignore[attr-defined]
        for node in cls.ctx.scope_nodes(init):
            hit = _registers_something(ctx, node)
            if hit is not None and (hit.lineno, hit.col_offset) < first:  # type: ignore[attr-defined]
                yield finding(
                    ctx, hit, "BLK003",
                    f"{cls.name}.__init__ registers a sub-module or parameter before "
                    "super().__init__() runs, which raises AttributeError; move "
                    "super().__init__() to the first line",
                )
