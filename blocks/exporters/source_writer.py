"""The machinery of the Python-source export: `SourceWriter` (walks the module tree, collects
helper classes and imports), the generic road for plain `torch.nn` layers (constructor
arguments read back from the instance, the rebuilt layer compared), and the emitter registry
(module type -> function writing the expression that constructs it).

A module with an `emit_source(writer, path)` method writes itself: that is how every block
family's module does it (`blocks/layers/*.py`, docs/contributing.md), so the families need not
import this package. The registry is for module types one cannot add a method to:

    @register_emitter(MyGate)
    def _my_gate(module: MyGate, writer: SourceWriter, path: str) -> str:
        writer.helper("MyGate", MY_GATE_SOURCE)   # class MyGate(nn.Module): ... plain torch
        return f"MyGate({module.channels})"
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn

from blocks.core.errors import ExportError
from blocks.core.pysource import (  # noqa: F401 - re-exported: emitters import them from here
    LINE_LENGTH,
    Call,
    Expr,
    call,
    flat,
    literal,
    number,
    prefixed,
    quote,
    render,
)

SUFFIXES = (".py",)
Emitter = Callable[[Any, "SourceWriter", str], "Expr"]
_EMITTERS: dict[type[nn.Module], Emitter] = {}
E = TypeVar("E", bound=Emitter)

#: BlocksModel's children in the order its forward applies them. A child not named here is an
#: error (it would otherwise be silently left out of the exported forward).
ROLES = ("preprocess", "backbone", "head", "heads")
#: how `--probabilities` is written for each head type (the same ops as `Head.probabilities`)
PROBABILITIES = {"softmax": ".softmax(dim=-1)", "sigmoid": ".sigmoid()"}

_NOT_LAYERS = {"Module", "ParameterList", "ParameterDict", "DataParallel", "Container"}
_MODULE_KEYS = frozenset(vars(nn.Module()))  # nn.Module's own bookkeeping attributes
#: libraries whose models (the `torchvision` and `timm` blocks) the writer cannot turn into source
LIBRARIES = frozenset({"torchvision", "timm"})


def register_emitter(*module_types: type[nn.Module]) -> Callable[[E], E]:
    """Register `fn(module, writer, path) -> construction expression` for exact module types."""

    def decorate(fn: E) -> E:
        for module_type in module_types:
            _EMITTERS[module_type] = fn
        return fn

    return decorate


def has_emitter(cls: type) -> bool:
    """Whether the writer knows how to write modules of type `cls`: its own `emit_source`
    method, a registered emitter, or the generic road of plain `torch.nn` layers."""
    return callable(getattr(cls, "emit_source", None)) or cls in _EMITTERS or _is_torch_layer(cls)


class SourceWriter:
    """Collects helper classes and imports while emitters write construction expressions."""

    def __init__(self) -> None:
        self.helpers: dict[str, str] = {}
        self.imports: set[str] = set()

    def construct(self, module: nn.Module, path: str) -> Expr:
        """The expression that builds `module` (found at `path` in the model) from scratch."""
        cls = type(module)
        library = cls.__module__.partition(".")[0]
        if library in LIBRARIES:
            raise ExportError(
                f"{path}: the python source writer cannot inline a library model "
                f"({cls.__module__}.{cls.__qualname__}, from {library}); export it to pt2 or onnx, "
                f"which record the computation, or to torchscript")
        own = getattr(module, "emit_source", None)
        if callable(own):  # a block family's module writes itself (see docs/contributing.md)
            return own(self, path)
        emitter = _EMITTERS.get(cls)
        if emitter is None and _is_torch_layer(cls):
            emitter = torch_layer
        if emitter is None:
            raise ExportError(
                f"{path}: cannot write {cls.__module__}.{cls.__qualname__} as plain PyTorch; no "
                "source emitter knows this module type (register one with "
                "blocks.exporters.source_writer.register_emitter)")
        return emitter(module, self, path)

    def children(self, module: nn.Module, path: str) -> list[tuple[str, Expr]]:
        return [(name, self.construct(child, f"{path}.{name}" if path else name))
                for name, child in module.named_children()]

    def checked(self, module: nn.Module, expression: Expr, path: str) -> Expr:
        """`expression` (which may use this writer's helper classes), once it is shown to build
        `module`: it is built on the meta device and compared with `module` (every submodule's
        type and hyper-parameters, every parameter and buffer shape). The top level is a helper
        class, so its type name differs; its attributes must not."""
        namespace: dict = {"nn": nn, "torch": torch}
        text = flat(expression)
        try:
            for source in self.helpers.values():
                exec(source, namespace)  # noqa: S102 - the helper classes written above
            with torch.device("meta"):
                rebuilt = eval(text, namespace)  # noqa: S307 - our own expression
        except Exception as err:  # noqa: BLE001 - any failure means we cannot write this layer
            raise ExportError(f"{path}: the written construction {text} fails: {err}") from None
        problem = module_difference(module, rebuilt, helper=True)
        if problem:
            raise ExportError(f"{path}: {type(module).__name__} cannot be rebuilt as {text} "
                              f"({problem})")
        return expression

    def helper(self, name: str, source: str) -> str:
        """Add a helper class (plain torch source) once; returns its name."""
        source = textwrap.dedent(source).strip() + "\n"
        if self.helpers.setdefault(name, source) != source:
            raise ExportError(f"two different helper classes want the name {name!r}")
        return name


# --- plain torch.nn layers -----------------------------------------------------------------------
def _is_torch_layer(cls: type) -> bool:
    return getattr(nn, cls.__name__, None) is cls and cls.__name__ not in _NOT_LAYERS


def _hyper(module: nn.Module) -> dict[str, Any]:
    """A module's hyper-parameters: its attributes minus nn.Module bookkeeping, tensors, children."""
    return {k: v for k, v in vars(module).items()
            if k not in _MODULE_KEYS and not isinstance(v, (torch.Tensor, nn.Module))}


def _same_default(value: Any, default: Any) -> bool:
    if isinstance(value, tuple) and not isinstance(default, tuple):
        return all(_same_default(v, default) for v in value)
    return type(value) is type(default) and value == default


def torch_layer(module: nn.Module, writer: SourceWriter, path: str) -> Expr:
    """`nn.X(args)` with the arguments read back from the instance, then verified by rebuilding."""
    cls = type(module)
    args: list[Expr] = []
    for name, param in list(inspect.signature(cls.__init__).parameters.items())[1:]:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or name in ("device", "dtype") \
                or name.startswith("_"):
            continue
        if not hasattr(module, name):
            if param.default is param.empty:
                raise ExportError(f"{path}: cannot read the required argument {name!r} of "
                                  f"nn.{cls.__name__} back from the layer")
            continue  # checked below: a differing value changes the rebuilt layer
        value = getattr(module, name)
        if name == "bias" and (value is None or isinstance(value, torch.Tensor)):
            value = value is not None
        if param.default is not param.empty and _same_default(value, param.default):
            continue
        text = literal(value, f"{path}: nn.{cls.__name__} argument {name}")
        positional = param.default is param.empty and param.kind != param.KEYWORD_ONLY
        args.append(text if positional else f"{name}={text}")
    expression = call(f"nn.{cls.__name__}", args)
    _check_rebuilt(module, flat(expression), path)
    return expression


def _check_rebuilt(module: nn.Module, expression: str, path: str) -> None:
    """Build `expression` on the meta device and compare it with `module`, submodules included."""
    try:
        with torch.device("meta"):
            rebuilt = eval(expression, {"nn": nn, "torch": torch})  # noqa: S307 - our own literals
    except Exception as err:  # noqa: BLE001 - any failure means we cannot write this layer
        raise ExportError(f"{path}: the written construction {expression} fails: {err}") from None
    problem = module_difference(module, rebuilt)
    if problem:
        raise ExportError(f"{path}: nn.{type(module).__name__} cannot be rebuilt from its "
                          f"constructor arguments ({problem}); it needs its own emitter")


def _loose(value: Any) -> Any:
    """(1, 1) and 1 and [1, 1] configure a torch layer alike."""
    if isinstance(value, (tuple, list)):
        value = tuple(_loose(v) for v in value)
        return value[0] if value and all(v == value[0] for v in value) else value
    return value


def module_difference(module: nn.Module, rebuilt: nn.Module, ignore: tuple[str, ...] = (),
                loose: bool = False, helper: bool = False) -> str | None:
    """What differs between two modules (types, hyper-parameters, weight shapes), or None.
    `loose`: an int and a tuple repeating it count as equal (`kernel_size=3` vs `(3, 3)`).
    `helper`: `rebuilt` is made of the generated file's helper classes: the top level's type is
    not compared, and submodule types are compared by class name."""
    ours = dict(module.named_modules())
    theirs = dict(rebuilt.named_modules())
    if list(ours) != list(theirs):
        return f"submodules {list(theirs)} instead of {list(ours)}"
    for name, sub in ours.items():
        other = theirs[name]
        same = (not name or type(sub).__name__ == type(other).__name__) if helper \
            else type(sub) is type(other)
        if not same:
            return f"{name or 'the layer'} is {type(other).__name__}, not {type(sub).__name__}"
        norm = _loose if loose else (lambda v: v)
        mine = {k: norm(v) for k, v in _hyper(sub).items() if k not in ignore}
        rebuilt_hyper = {k: norm(v) for k, v in _hyper(other).items() if k not in ignore}
        if mine != rebuilt_hyper:
            keys = sorted(k for k in mine.keys() | rebuilt_hyper.keys()
                          if mine.get(k, ...) != rebuilt_hyper.get(k, ...))
            return f"attributes {keys} differ"
    want = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    if want != got:
        return f"parameters and buffers {got} instead of {want}"
    return None


# --- containers ----------------------------------------------------------------------------------
@register_emitter(nn.Sequential)
def _sequential(module: nn.Sequential, writer: SourceWriter, path: str) -> Expr:
    children = writer.children(module, path)
    if [name for name, _ in children] == [str(i) for i in range(len(children))]:
        return call("nn.Sequential", [expr for _, expr in children])
    writer.imports.add("from collections import OrderedDict")
    pairs = [call("", [quote(name), expr]) for name, expr in children]
    return call("nn.Sequential", [call("OrderedDict", [call("", pairs, "[", "]")])])


@register_emitter(nn.ModuleList)
def _module_list(module: nn.ModuleList, writer: SourceWriter, path: str) -> Expr:
    return call("nn.ModuleList", [call("", [expr for _, expr in writer.children(module, path)],
                                       "[", "]")])


@register_emitter(nn.ModuleDict)
def _module_dict(module: nn.ModuleDict, writer: SourceWriter, path: str) -> Expr:
    items = [prefixed(f"{quote(name)}: ", expr) for name, expr in writer.children(module, path)]
    return call("nn.ModuleDict", [call("", items, "{", "}")])


