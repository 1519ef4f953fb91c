"""Plain PyTorch source for a built model: one readable `.py` file that needs only torch (and
safetensors to read weights), whose layers carry the built model's names.

The writer walks the module tree. Each module *type* has an emitter returning the Python
expression that constructs it (and, for blocks' own modules, registering a small helper class
that carries its forward): the module's own `emit_source` method (every block family's module,
see docs/contributing.md) or a function registered with `register_emitter`. Plain `torch.nn` layers take one generic road: their constructor
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

import keyword
import re
import textwrap
import types
from pathlib import Path

import torch
from torch import nn

from blocks.core.version import __version__
from blocks.exporters import preprocessing_source  # noqa: F401 - registers Preprocessing's emitter
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
from blocks.exporters.source_writer import (  # noqa: F401 - SUFFIXES, register_emitter: their old home
    LINE_LENGTH,
    PROBABILITIES,
    ROLES,
    SUFFIXES,
    Expr,
    SourceWriter,
    call,
    literal,
    quote,
    register_emitter,
    render,
)
from blocks.lint import lint_source


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


