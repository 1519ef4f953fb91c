"""Plain PyTorch source for a built model: one readable `.py` file that needs only torch (and
safetensors to read weights), whose layers carry the built model's names.

The writer walks the module tree. Each module *type* has an emitter, a function returning the
Python expression that constructs it (and, for blocks' own modules, registering a small helper
class that carries its forward). Plain `torch.nn` layers take one generic road: their constructor
arguments are read back from the instance, and the rebuilt layer is compared with the original
(hyper-parameters, parameter and buffer shapes) before a line is written. A module type without
an emitter is an `ExportError` naming its path and type, never a guess:

    @register_emitter(MyGate)
    def _my_gate(module: MyGate, writer: SourceWriter, path: str) -> str:
        writer.helper("MyGate", MY_GATE_SOURCE)   # class MyGate(nn.Module): ... plain torch
        return f"MyGate({module.channels})"

The top-level class is written from `BlocksModel`'s children in forward order (`ROLES`).
"""

from __future__ import annotations

import inspect
import json
import keyword
import math
import re
import textwrap
import types
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from blocks.builder.preprocessing import Preprocessing
from blocks.exporters.common import (
    CHECK_BATCHES,
    EXPORT_BATCH,
    ExportError,
    ExportGraph,
    ExportResult,
    compare,
    output_names,
    reference,
    sample_input,
    staged,
)
from blocks.layers.modules.pooling import GlobalAvgPool
from blocks.layers.modules.residual import ResidualModule

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
LINE_LENGTH = 88  # the generated file keeps to the formatters' default


def register_emitter(*module_types: type[nn.Module]) -> Callable[[E], E]:
    """Register `fn(module, writer, path) -> construction expression` for exact module types."""

    def decorate(fn: E) -> E:
        for module_type in module_types:
            _EMITTERS[module_type] = fn
        return fn

    return decorate


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
        emitter = _EMITTERS.get(cls)
        if emitter is None and _is_torch_layer(cls):
            emitter = torch_layer
        if emitter is None:
            raise ExportError(
                f"{path}: cannot write {cls.__module__}.{cls.__qualname__} as plain PyTorch; no "
                "source emitter knows this module type (register one with "
                "blocks.exporters.python_source.register_emitter)")
        return emitter(module, self, path)

    def children(self, module: nn.Module, path: str) -> list[tuple[str, Expr]]:
        return [(name, self.construct(child, f"{path}.{name}" if path else name))
                for name, child in module.named_children()]

    def helper(self, name: str, source: str) -> str:
        """Add a helper class (plain torch source) once; returns its name."""
        source = textwrap.dedent(source).strip() + "\n"
        if self.helpers.setdefault(name, source) != source:
            raise ExportError(f"two different helper classes want the name {name!r}")
        return name


# --- expressions ---------------------------------------------------------------------------------
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


# --- blocks' own modules -------------------------------------------------------------------------
RESIDUAL = '''
class Residual(nn.Module):
    """body(x) + shortcut(x): a residual connection."""

    def __init__(self, body: nn.Module, shortcut: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)
'''

GLOBAL_AVG_POOL = '''
class GlobalAvgPool(nn.Module):
    """Mean over every axis after the channels: [batch, C, *spatial] -> [batch, C]."""

    def __init__(self, spatial_dims: int) -> None:
        super().__init__()
        self.dims = tuple(range(2, 2 + spatial_dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=self.dims)
'''


@register_emitter(ResidualModule)
def _residual(module: ResidualModule, writer: SourceWriter, path: str) -> Expr:
    name = writer.helper("Residual", RESIDUAL)
    return call(name, [expr for _, expr in writer.children(module, path)])


@register_emitter(GlobalAvgPool)
def _global_avg_pool(module: GlobalAvgPool, writer: SourceWriter, path: str) -> Expr:
    if module.dims != tuple(range(2, 2 + len(module.dims))):
        raise ExportError(f"{path}: GlobalAvgPool over dims {module.dims} is not [C, *spatial]")
    return f"{writer.helper('GlobalAvgPool', GLOBAL_AVG_POOL)}({len(module.dims)})"


PREPROCESSING = '''
class Preprocessing(nn.Module):
    """Raw input -> model input: impute, scale, standardise (training statistics), normalise
    channels, one-hot encode category codes (after the numeric columns), resize, reshape."""

    def __init__(self, scale: float, standardize: bool, raw_shape: list[int] | None,
                 resize_from: list[int] | None, input_shape: list[int], impute: bool = False,
                 numeric_index: list[int] | None = None, category_index: list[int] | None = None,
                 category_sizes: list[int] | None = None,
                 channel_mean: list[float] | None = None,
                 channel_std: list[float] | None = None,
                 embedding_sizes: list[int | None] | None = None) -> None:
        super().__init__()
        self.scale = scale
        self.standardize = standardize
        self.impute = impute
        self.resize_from = tuple(resize_from) if resize_from is not None else None
        self.input_shape = tuple(input_shape)
        self.category_sizes = list(category_sizes or [])
        self.normalizes = channel_mean is not None
        if standardize:
            self.register_buffer("mean", torch.zeros(raw_shape))
            self.register_buffer("std", torch.ones(raw_shape))
        if impute:
            self.register_buffer("fill", torch.zeros(raw_shape))
        if self.category_sizes:
            self.register_buffer("numeric_index", torch.tensor(numeric_index, dtype=torch.long),
                                 persistent=False)
            self.register_buffer("category_index", torch.tensor(category_index, dtype=torch.long),
                                 persistent=False)
        if self.normalizes:
            shape = (len(channel_mean), 1, 1)
            self.register_buffer("channel_mean", torch.tensor(channel_mean).reshape(shape),
                                 persistent=False)
            self.register_buffer("channel_std", torch.tensor(channel_std).reshape(shape),
                                 persistent=False)
        if embedding_sizes is not None:
            self.embeddings = nn.ModuleDict({
                str(j): nn.Embedding(size + 1, dim, padding_idx=0)
                for j, (size, dim) in enumerate(zip(self.category_sizes, embedding_sizes))
                if dim is not None
            })

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.impute:
            x = torch.where(torch.isnan(x), self.fill, x)
        if self.category_sizes:
            codes = torch.index_select(x.reshape(x.shape[0], -1), 1, self.category_index)
        if self.scale != 1.0:
            x = x * self.scale
        if self.standardize:
            x = (x - self.mean) / self.std
        if self.normalizes:
            x = (x - self.channel_mean) / self.channel_std
        if self.category_sizes:
            parts = [torch.index_select(x.reshape(x.shape[0], -1), 1, self.numeric_index)]
            embeddings = self._modules.get("embeddings")
            for j, size in enumerate(self.category_sizes):
                code = codes[:, j]
                if embeddings is not None and str(j) in embeddings:
                    known = (code >= 0) & (code < size)
                    index = torch.where(known, code + 1, torch.zeros_like(code)).long()
                    parts.append(embeddings[str(j)](index).to(x.dtype))
                else:
                    ids = torch.arange(size, device=x.device, dtype=x.dtype)
                    parts.append((code[:, None] == ids).to(x.dtype))
            x = torch.cat(parts, dim=1)
        if self.resize_from is not None:
            x = x.reshape(x.shape[0], *self.resize_from)
            if tuple(self.resize_from[1:]) != self.input_shape[1:]:
                x = nn.functional.interpolate(
                    x, size=self.input_shape[1:], mode="bilinear", align_corners=False
                )
        return x.reshape(x.shape[0], *self.input_shape)
'''


@register_emitter(Preprocessing)
def _preprocessing(module: Preprocessing, writer: SourceWriter, path: str) -> Expr:
    raw_shape = (list(module.mean.shape) if module.standardize
                 else list(module.fill.shape) if module.impute is not None else None)
    resize_from = list(module.resize_from) if module.resize_from is not None else None
    args = [literal(module.scale, f"{path}.scale"), literal(module.standardize, path),
            literal(raw_shape, path), literal(resize_from, path),
            literal(list(module.input_shape), path)]
    extra: list[Expr] = []
    if module.impute is not None or module.category_sizes or module.normalizes:
        extra.append(literal(module.impute is not None, path))
    if module.category_sizes or module.normalizes:
        cats = bool(module.category_sizes)
        extra += [literal(module.numeric_index.tolist() if cats else None, path),
                  literal(module.category_index.tolist() if cats else None, path),
                  literal(list(module.category_sizes) if cats else None, path)]
    embeddings = module._modules.get("embeddings")
    if module.normalizes or embeddings is not None:
        extra += [literal(module.channel_mean.reshape(-1).tolist() if module.normalizes else None,
                          path),
                  literal(module.channel_std.reshape(-1).tolist() if module.normalizes else None,
                          path)]
    if embeddings is not None:
        extra.append(literal([embeddings[str(j)].embedding_dim if str(j) in embeddings else None
                              for j in range(len(module.category_sizes))], path))
    return call(writer.helper("Preprocessing", PREPROCESSING), args + extra)


# --- the model class -----------------------------------------------------------------------------
def class_name_for(model: nn.Module, taken: set[str]) -> str:
    """`seed-cnn` -> `SeedCnn`; never a name the file already uses."""
    words = re.findall(r"[A-Za-z0-9]+", getattr(model, "name", "") or "")
    name = "".join(w[:1].upper() + w[1:] for w in words) or "Model"
    if name[0].isdigit() or keyword.iskeyword(name):
        name = "Model" + name
    while name in taken:
        name += "Model"
    return name


def model_source(model: nn.Module, *, probabilities: bool = False, module_name: str = "model",
                 class_name: str | None = None) -> tuple[str, str]:
    """(source text, class name) of a plain-PyTorch file reproducing `model` (a BlocksModel)."""
    writer = SourceWriter()
    children = dict(model.named_children())
    unknown = [name for name in children if name not in ROLES]
    if unknown:
        name = unknown[0]
        raise ExportError(f"{name}: the model has a child {name!r} "
                          f"({type(children[name]).__qualname__}) that the exported forward does "
                          f"not know where to apply (known: {', '.join(ROLES)})")
    init = [f"self.{name} = " + render(writer.construct(children[name], name), 8,
                                      8 + len(f"self.{name} = "))
            for name in ROLES if name in children]
    name = class_name or class_name_for(model, set(writer.helpers) | {"load", "nn", "torch", "OrderedDict"})
    body = _forward(model, probabilities)
    dtype = next((p.dtype for p in model.parameters() if p.dtype.is_floating_point), torch.float32)
    if dtype != torch.float32:
        init.append(f"self.to({dtype})  # the blocks model's parameter dtype")
    multi = "heads" in children
    returns = "dict[str, torch.Tensor]" if multi else "torch.Tensor"
    stdlib = [*sorted(writer.imports), ""] if writer.imports else []
    parts = [_header(model, name, probabilities, module_name, multi), *stdlib, "import torch",
             "from torch import nn", "", "",
             *(helper + "\n" for helper in writer.helpers.values()),
             f"class {name}(nn.Module):",
             textwrap.fill(f'"""{_docstring_text(getattr(model, "name", None) or name)}, as built '
                           'by blocks (layer names match its weights)."""', LINE_LENGTH,
                           initial_indent="    ", subsequent_indent="    "), "",
             "    def __init__(self) -> None:", "        super().__init__()",
             *(" " * 8 + line for line in init), "",
             f"    def forward(self, x: torch.Tensor) -> {returns}:",
             *(" " * 8 + line for line in body), "", "",
             _loader(name)]
    return "\n".join(parts), name


def _forward(model: nn.Module, probabilities: bool) -> list[str]:
    shape = tuple(model._sample_shape)
    expected = ", ".join(map(str, shape))
    message = f'f"expected input [batch, {expected}], got {{list(x.shape)}}"'
    lines = [f"if x.shape[1:] != {literal(shape, 'input shape')}:",
             f"    raise ValueError({message})" if 12 + len(message) + 18 <= LINE_LENGTH
             else f"    raise ValueError(\n{' ' * 16}{message}\n{' ' * 12})"]
    # lines after a line's first carry their own indentation (see `render`)
    names = dict(model.named_children())
    if "preprocess" in names:
        lines.append("x = self.preprocess(x)")
    lines.append("features = self.backbone(x)")
    heads = model.spec.head_specs

    def finish(head_type: str) -> str:
        if not probabilities:
            return ""
        if head_type not in PROBABILITIES:
            raise ExportError(f"heads: no probability function is known for head type {head_type!r}")
        return PROBABILITIES[head_type]

    if "heads" in names:
        items = [f"{quote(head)}: self.heads[{quote(head)}](features){finish(heads[head].type)}"
                 for head in names["heads"]]
        lines.append(render(call("return ", items, "{", "}"), 8, 8))
    else:
        lines.append(f"return self.head(features){finish(next(iter(heads.values())).type)}")
    return lines


def _header(model: nn.Module, name: str, probabilities: bool, module_name: str, multi: bool) -> str:
    from blocks import __version__

    spec = model.spec
    title = _docstring_text(spec.name or name)
    if spec.description:
        title += ": " + _docstring_text(spec.description)
    what = "probabilities" if probabilities else "logits"
    out = (f"a dict of {what} by head name ({', '.join(spec.heads)})" if multi
           else f"a tensor of {what}")
    shape = ", ".join(map(str, model._sample_shape))
    usage = ([f"    from {module_name} import load", ""] if module_name.isidentifier() else [])
    return "\n".join([
        textwrap.fill(f'"""{title}', LINE_LENGTH), "",
        f"Plain PyTorch written by `blocks export` (blocks {__version__}). It needs only torch,",
        "and safetensors to read weights. Layers are named as in the blocks model, so the run's",
        "model.safetensors loads unchanged:", "",
        *usage,
        '    model = load("model.safetensors")  # load() is defined at the end of this file',
        f"    out = model(x)  # x: [batch, {shape}] {str(model._input_dtype).removeprefix('torch.')}", "",
        textwrap.fill(f"`forward` returns {out}.", LINE_LENGTH),
        '"""', ""])


def _loader(name: str) -> str:
    return textwrap.dedent(f'''\
        def load(weights: str = "model.safetensors", device: str = "cpu") -> {name}:
            """The model with a blocks run's weights (its model.safetensors), in eval mode."""
            from safetensors.torch import load_file

            model = {name}()
            model.load_state_dict(load_file(weights))
            return model.to(device).eval()
        ''')


def _docstring_text(text: str) -> str:
    return " ".join(text.split()).replace("\\", "\\\\").replace('"""', "'''")


# --- export and verification ---------------------------------------------------------------------
def export_python(graph: ExportGraph, path: Path) -> ExportResult:
    """Write the source, then check it: `blocks lint` clean, and the class, loaded with the
    model's state dict, reproduces its outputs bit for bit."""
    model = graph.model
    code, name = model_source(model, probabilities=graph.probabilities, module_name=path.stem)
    check_source(code, name, graph, path)
    with staged(path) as tmp:
        tmp.write_text(code, encoding="utf-8")
    batches = (EXPORT_BATCH, *CHECK_BATCHES)
    return ExportResult("python", path, "blocks source writer", 0.0, 0.0, batches,
                        output_names(model), graph.probabilities)


def check_source(code: str, class_name: str, graph: ExportGraph, path: Path) -> None:
    from blocks.lint import lint_source

    findings = lint_source(code, str(path))
    if findings:
        raise ExportError("the generated source fails `blocks lint`:\n"
                          + "\n".join(str(f) for f in findings))
    module = types.ModuleType(path.stem)
    module.__file__ = str(path)
    exec(compile(code, str(path), "exec"), module.__dict__)  # noqa: S102 - the code just written
    with torch.random.fork_rng(devices=[]):  # the class initialises weights: keep the caller's RNG
        rebuilt = getattr(module, class_name)()
    try:
        result = rebuilt.load_state_dict(graph.model.state_dict(), strict=False)
    except RuntimeError as err:
        raise ExportError(f"the generated class cannot load the model's weights: {err}") from None
    if result.missing_keys or result.unexpected_keys:
        raise ExportError(f"the generated class's weights do not match the model's (missing: "
                          f"{result.missing_keys[:5]}, unexpected: {result.unexpected_keys[:5]})")
    rebuilt.eval()
    names = output_names(graph.model)
    for batch in (EXPORT_BATCH, *CHECK_BATCHES):
        x = sample_input(graph.model, batch, seed=batch)
        try:
            with torch.no_grad():
                out = rebuilt(x)
        except Exception as err:  # noqa: BLE001 - a bug in an emitter
            raise ExportError(f"the generated class fails at batch size {batch}: "
                              f"{type(err).__name__}: {err}") from None
        got = out if isinstance(out, dict) else {names[0]: out}
        compare(reference(graph, x), got, 0.0, f"the generated class at batch size {batch}")


from blocks.exporters import layer_source  # noqa: E402, F401 - registers the blocks.layers emitters
