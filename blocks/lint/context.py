"""What the rules know about a file and the file set: imports, names, which classes are modules.

Everything is static (`ast` only). When a name cannot be resolved the answer is "unknown", and
rules treat unknown as "not a layer / not a tensor": low false positives before recall.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from blocks.lint.torch_names import ALL_LAYERS, STATEFUL_LAYERS

# Names a snippet may use without importing them (docs, notebooks): the usual conventions.
DEFAULT_ALIASES = {"torch": "torch", "nn": "torch.nn", "F": "torch.nn.functional"}
MODULE_BASES = {"torch.nn.Module", "torch.nn.modules.Module", "torch.nn.modules.module.Module"}
FORWARD_NAMES = ("forward",)
FORWARD_PREFIXES = ("forward_", "_forward")


def is_forward_name(name: str) -> bool:
    """`forward` and its helpers (`forward_features`, `_forward_impl`) run on every call."""
    return name in FORWARD_NAMES or name.startswith(FORWARD_PREFIXES)


def torch_nn_class(qualname: str | None) -> str | None:
    """The torch.nn class a dotted name refers to (`torch.nn.modules.conv.Conv2d` -> `Conv2d`)."""
    if not qualname or "." not in qualname:
        return None
    parent, name = qualname.rsplit(".", 1)
    if name not in ALL_LAYERS:
        return None
    if parent in ("torch.nn", "torch.nn.modules") or parent.startswith("torch.nn.modules."):
        return name
    if parent.startswith("torch.nn.parallel") and name == "DataParallel":
        return name
    return None


def module_name_for(path: Path) -> str:
    """The dotted module name of a file, found by walking up through packages (`__init__.py`)."""
    path = path.resolve()
    parts = [] if path.stem == "__init__" else [path.stem]
    parent = path.parent
    while (parent / "__init__.py").exists():
        parts.insert(0, parent.name)
        if parent.parent == parent:
            break
        parent = parent.parent
    return ".".join(parts) or path.stem


@dataclass
class ClassInfo:
    """One class definition and where its bases point."""

    node: ast.ClassDef
    ctx: FileContext
    bases: list[str | None]  # resolved dotted names, None when unresolvable
    _self_assignments: dict[str, list[ast.expr]] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.node.name

    def methods(self) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
        """The class's methods; `@overload` stubs are skipped (only the real body runs)."""
        for item in self.node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and not _is_overload(item):
                yield item

    def method(self, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        """The definition Python keeps: the last one of that name."""
        found = [m for m in self.methods() if m.name == name]
        return found[-1] if found else None

    def self_assignments(self) -> dict[str, list[ast.expr]]:
        """`self.attr = value` in any method: attribute name -> assigned values (cached)."""
        if self._self_assignments is not None:
            return self._self_assignments
        out: dict[str, list[ast.expr]] = {}
        for method in self.methods():
            for node in ast.walk(method):
                for target, value in assignment_pairs(node):
                    if is_self_attr(target):
                        out.setdefault(target.attr, []).append(value)  # type: ignore[union-attr]
        self._self_assignments = out
        return out


@dataclass
class FileContext:
    """A parsed file plus its import table, so `nn.Linear` and `Linear` both resolve."""

    path: str
    source: str
    tree: ast.Module
    module: str
    aliases: dict[str, str] = field(default_factory=dict)
    local_names: set[str] = field(default_factory=set)  # names bound in the file, not imports
    project: Project | None = None
    cache: dict[object, object] = field(default_factory=dict, repr=False)
    _classes: list[ast.ClassDef] = field(default_factory=list, repr=False)

    @classmethod
    def parse(cls, path: str, source: str, module: str = "") -> FileContext:
        """Parse (raises SyntaxError) and index imports; `module` resolves relative imports."""
        tree = ast.parse(source, filename=path)
        ctx = cls(path=path, source=source, tree=tree, module=module or Path(path).stem)
        ctx._index_names()
        return ctx

    def _index_names(self) -> None:
        package = self.module.rsplit(".", 1)[0] if "." in self.module else ""
        if Path(self.path).name == "__init__.py":
            package = self.module
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        self.aliases[a.asname] = a.name
                    else:
                        root = a.name.split(".")[0]
                        self.aliases[root] = root
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg_parts = package.split(".") if package else []
                    keep = len(pkg_parts) - (node.level - 1)
                    prefix = ".".join(pkg_parts[: max(keep, 0)])
                    base = ".".join(p for p in (prefix, base) if p)
                for a in node.names:
                    if a.name != "*":
                        self.aliases[a.asname or a.name] = f"{base}.{a.name}" if base else a.name
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.local_names.add(node.name)
                if isinstance(node, ast.ClassDef):
                    self._classes.append(node)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                self.local_names.add(node.id)

    def resolve(self, expr: ast.expr) -> str | None:
        """The dotted name an expression refers to (`nn.Conv2d` -> `torch.nn.Conv2d`), or None."""
        parts: list[str] = []
        while isinstance(expr, ast.Attribute):
            parts.insert(0, expr.attr)
            expr = expr.value
        if not isinstance(expr, ast.Name):
            return None
        root = expr.id
        if root in self.aliases:
            head = self.aliases[root]
        elif root in DEFAULT_ALIASES and root not in self.local_names:
            head = DEFAULT_ALIASES[root]
        elif root in self.local_names:
            head = f"{self.module}.{root}"
        else:
            return None  # a parameter (`self`, `x`) or a builtin: not a name we can follow
        return ".".join([head, *parts])

    def torch_attr(self, expr: ast.expr, namespace: str) -> str | None:
        """`F.relu` with namespace `torch.nn.functional` -> `relu`; None for anything else."""
        name = self.resolve(expr)
        if name and name.startswith(namespace + ".") and name.count(".") == namespace.count(".") + 1:
            return name.rsplit(".", 1)[1]
        return None

    def layer_of_call(self, node: ast.expr) -> tuple[str, str] | None:
        """For `nn.Linear(...)` / `MyBlock(...)` / `nn.Parameter(...)`: (kind, class name).

        kind is "stateful" (a torch.nn layer with weights or train/eval behaviour), "stateless",
        "user" (an nn.Module subclass defined in the scanned files) or "parameter".
        """
        if not isinstance(node, ast.Call):
            return None
        name = self.resolve(node.func)
        if name is None:
            return None
        if name in ("torch.nn.Parameter", "torch.nn.parameter.Parameter"):
            return ("parameter", "Parameter")
        nn_class = torch_nn_class(name)
        if nn_class:
            return ("stateful" if nn_class in STATEFUL_LAYERS else "stateless", nn_class)
        if self.project is not None:
            info = self.project.find_class(name)
            if info is not None and self.project.is_module(info):
                return ("user", info.name)
        return None

    def is_builtin(self, name: str) -> bool:
        """True when `name` is not rebound in this file (no import, def or assignment of it)."""
        return name not in self.aliases and name not in self.local_names

    def scope_nodes(self, scope: ast.AST) -> list[ast.AST]:
        """`walk_scope(scope)` as a list, computed once: every rule reuses it."""
        key = ("scope", id(scope))
        if key not in self.cache:
            self.cache[key] = list(walk_scope(scope))
        return self.cache[key]  # type: ignore[return-value]

    def classes(self) -> list[ast.ClassDef]:
        """Every class definition in the file, nested ones included."""
        return self._classes


class Project:
    """The scanned file set: lets a class count as a module through bases in other files."""

    def __init__(self) -> None:
        self.by_qualname: dict[str, ClassInfo] = {}
        self.by_name: dict[str, list[ClassInfo]] = {}
        self._module_cache: dict[int, bool] = {}
        self._infos: dict[int, list[ClassInfo]] = {}

    def add(self, ctx: FileContext) -> None:
        ctx.project = self
        for node in ctx.classes():
            info = ClassInfo(node=node, ctx=ctx, bases=[ctx.resolve(b) for b in node.bases])
            self._infos.setdefault(id(ctx), []).append(info)
            self.by_qualname[f"{ctx.module}.{node.name}"] = info
            self.by_name.setdefault(node.name, []).append(info)

    def find_class(self, qualname: str) -> ClassInfo | None:
        """Exact dotted name first; else a unique class of that simple name in the file set."""
        if qualname in self.by_qualname:
            return self.by_qualname[qualname]
        simple = self.by_name.get(qualname.rsplit(".", 1)[-1], [])
        return simple[0] if len(simple) == 1 else None

    def is_module(self, info: ClassInfo) -> bool:
        """Does the class derive from nn.Module (directly, or through classes in the file set)?"""
        key = id(info.node)
        if key in self._module_cache:
            return self._module_cache[key]
        self._module_cache[key] = False  # cycle guard
        result = False
        for base in info.bases:
            if base is None:
                continue
            if base in MODULE_BASES or torch_nn_class(base):
                result = True
                break
            parent = self.find_class(base)
            if parent is not None and parent is not info and self.is_module(parent):
                result = True
                break
        self._module_cache[key] = result
        return result

    def module_classes(self, ctx: FileContext) -> list[ClassInfo]:
        """The file's nn.Module subclasses (computed once per file)."""
        key = ("module_classes", id(self))
        if key not in ctx.cache:
            ctx.cache[key] = [
                info for info in self._infos.get(id(ctx), []) if self.is_module(info)
            ]
        return ctx.cache[key]  # type: ignore[return-value]


def _is_overload(func: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for dec in func.decorator_list:
        name = dec.attr if isinstance(dec, ast.Attribute) else getattr(dec, "id", "")
        if name == "overload":
            return True
    return False


def is_stub(func: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A body that does nothing or only raises (abstract `__init__`, protocol stubs)."""
    body = [
        s for s in func.body
        if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
    ]
    return all(isinstance(s, (ast.Pass, ast.Raise)) for s in body)


def assignment_pairs(node: ast.AST) -> Iterator[tuple[ast.expr, ast.expr]]:
    """(target, value) for `a = b`, `a: T = b` and each target of `a = c = b`."""
    if isinstance(node, ast.Assign):
        for target in node.targets:
            yield target, node.value
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        yield node.target, node.value


def is_self_attr(node: ast.AST) -> bool:
    """`self.x` (a direct attribute of `self`)."""
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
    )


def walk_scope(node: ast.AST) -> Iterator[ast.AST]:
    """Every node in a function or module body, not descending into nested defs or classes."""
    stack = list(ast.iter_child_nodes(node))
    while stack:
        child = stack.pop()
        yield child
        if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            stack.extend(ast.iter_child_nodes(child))


def scopes(tree: ast.Module) -> Iterator[ast.AST]:
    """The module itself and every function (each is a scope of local names)."""
    yield tree
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield node
