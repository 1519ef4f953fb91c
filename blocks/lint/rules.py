"""The rules: each a function from a parsed file (in its file set) to findings.

Each rule is deliberately narrow. A finding must be a real bug in ordinary code; where the code
alone cannot tell (a layer class held in a variable, a parameter that may be a list), the rule
says nothing.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from blocks.lint.context import (
    ClassInfo,
    FileContext,
    assignment_pairs,
    is_forward_name,
    is_self_attr,
    is_stub,
    scopes,
    walk_scope,
)
from blocks.lint.report import Finding
from blocks.lint.tensors import ScopeNames, TensorOracle, scope_names
from blocks.lint.torch_names import FACTORIES, MODULE_METHODS

Check = Callable[[FileContext], Iterator[Finding]]


@dataclass(frozen=True)
class Rule:
    """A rule code, a one-line title (for `--help` and docs) and its check."""

    code: str
    title: str
    check: Check


def _finding(ctx: FileContext, node: ast.AST, code: str, message: str) -> Finding:
    line = getattr(node, "lineno", 1)
    col = getattr(node, "col_offset", 0) + 1
    return Finding(path=ctx.path, line=line, column=col, code=code, message=message)


def _module_classes(ctx: FileContext) -> Iterator[ClassInfo]:
    assert ctx.project is not None
    yield from ctx.project.module_classes(ctx)


def _layer_text(kind: str, name: str) -> str:
    return "nn.Parameter" if kind == "parameter" else (f"nn.{name}" if kind != "user" else name)


# BLK001 ------------------------------------------------------------------------------------
def check_layer_in_forward(ctx: FileContext) -> Iterator[Finding]:
    """A layer built inside `forward` is rebuilt, with fresh random weights, on every call."""
    for cls in _module_classes(ctx):
        for method in cls.methods():
            if not is_forward_name(method.name):
                continue
            for node in ast.walk(method):
                layer = ctx.layer_of_call(node)  # type: ignore[arg-type]
                if layer is None or layer[0] == "stateless":
                    continue
                text = _layer_text(*layer)
                if layer[0] == "parameter":
                    why = "gets new values on every call and is never trained"
                elif layer[1].startswith(("Dropout", "AlphaDropout", "FeatureAlpha", "RReLU")):
                    why = "stays in training mode, so model.eval() cannot switch it off"
                else:
                    why = "gets fresh random weights on every call and is not in model.parameters()"
                yield _finding(
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
    for cls in _module_classes(ctx):
        if cls.method("__init__") is not None:
            continue
        near = [m for m in cls.methods() if is_init_near_miss(m.name) and not _returns_value(m)]
        for method in near:
            yield _finding(
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
                        yield _finding(
                            ctx, target, "BLK002",
                            f"self.{target.attr} = {_layer_text(*layer)}(...) in "  # type: ignore[attr-defined]
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
    for cls in _module_classes(ctx):
        init = cls.method("__init__")
        if init is None or is_stub(init):
            continue
        calls = [n for n in ctx.scope_nodes(init) if _is_init_call(n)]
        if not calls and not _delegates_init(cls, init):
            yield _finding(
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
                yield _finding(
                    ctx, hit, "BLK003",
                    f"{cls.name}.__init__ registers a sub-module or parameter before "
                    "super().__init__() runs, which raises AttributeError; move "
                    "super().__init__() to the first line",
                )


# BLK004 ------------------------------------------------------------------------------------
def _module_valued(ctx: FileContext, expr: ast.expr, names: ScopeNames) -> str | None:
    """The layer class if `expr` is a stateful/user layer (or a local bound only to those)."""
    layer = ctx.layer_of_call(expr)
    if layer is not None and layer[0] in ("stateful", "user"):
        return _layer_text(*layer)
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
    for cls in _module_classes(ctx):
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
                        yield _finding(
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
                    yield _finding(
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
    for cls in _module_classes(ctx):
        for method in cls.methods():
            for node in ctx.scope_nodes(method):
                for target, value in assignment_pairs(node):
                    if is_self_attr(target) and _requires_grad_true(ctx, value):
                        yield _finding(
                            ctx, target, "BLK005",
                            f"self.{target.attr} is a tensor with requires_grad=True kept as a "  # type: ignore[attr-defined]
                            "plain attribute: parameters() and .to(device) miss it, so it is "
                            "never trained; wrap it: nn.Parameter(tensor)",
                        )


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
                yield _finding(
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
    for cls in _module_classes(ctx):
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
                yield _finding(
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
                yield _finding(
                    ctx, node, "BLK008",
                    f"{act} output passed to {loss_text}, which applies {applies} itself: the "
                    "activation is applied twice and gradients shrink; pass the raw logits",
                )


RULES: tuple[Rule, ...] = (
    Rule("BLK001", "layer or nn.Parameter created inside forward", check_layer_in_forward),
    Rule("BLK002", "no __init__: a misspelled one, or layers assigned in another method",
         check_init),
    Rule("BLK003", "super().__init__() missing or called after registering sub-modules",
         check_super_init),
    Rule("BLK004", "layers kept in a plain list/dict/tuple instead of nn.ModuleList/ModuleDict",
         check_plain_containers),
    Rule("BLK005", "tensor with requires_grad=True kept as a plain attribute, not nn.Parameter",
         check_grad_tensor_attribute),
    Rule("BLK006", "builtin sum()/max()/min() applied to a tensor", check_builtin_reduction),
    Rule("BLK007", "tensor factory in forward without device=", check_factory_device),
    Rule("BLK008", "softmax/sigmoid output fed to a loss that expects logits",
         check_double_activation),
)
RULE_CODES: tuple[str, ...] = tuple(r.code for r in RULES)
