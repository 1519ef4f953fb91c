"""Plain PyTorch source of a multi-input model: the class takes the dict of tensors keyed by
input name, runs each input's encoder (`self.inputs[name]`), the combiner, the backbone and the
head(s); layer names match the blocks model's, so its weights load unchanged. Checked like the
one-input source: `blocks lint` clean, ruff-style lines, bit for bit against the model."""

from __future__ import annotations

import textwrap
import types
from pathlib import Path

import torch
from torch import nn

from blocks.core.version import __version__
from blocks.exporters.common import ExportError, ExportResult, compare, output_names, staged
from blocks.exporters.multi_export import NamedInputs, sample_inputs
from blocks.exporters.python_source import _docstring_text, _loader, class_name_for
from blocks.exporters.source_writer import LINE_LENGTH, PROBABILITIES, SourceWriter, quote, render
from blocks.lint import lint_source

ROLES = ("inputs", "combine", "backbone", "head", "heads")


def multi_model_source(model: nn.Module, *, probabilities: bool = False) -> tuple[str, str]:
    """(source text, class name) of a plain-PyTorch file reproducing a multi-input model."""
    writer = SourceWriter()
    children = dict(model.named_children())
    unknown = [name for name in children if name not in ROLES]
    if unknown:
        raise ExportError(f"{unknown[0]}: the model has a child the exported forward does not "
                          f"know where to apply (known: {', '.join(ROLES)})")
    init = [f"self.{name} = " + render(writer.construct(children[name], name), 8,
                                      8 + len(f"self.{name} = "))
            for name in ROLES if name in children]
    name = class_name_for(model, set(writer.helpers) | {"load", "nn", "torch", "OrderedDict"})
    heads = model.spec.head_specs

    def finish(head_type: str) -> str:
        return PROBABILITIES[head_type] if probabilities else ""

    names = list(model._input_names)
    body = [f"parts = [self.inputs[name](x[name]) for name in {names!r}]",
            "features = self.backbone(self.combine(*parts))"]
    if "heads" in children:
        items = ", ".join(f"{quote(h)}: self.heads[{quote(h)}](features){finish(heads[h].type)}"
                          for h in children["heads"])
        body.append(f"return {{{items}}}")
        returns = "dict[str, torch.Tensor]"
    else:
        body.append(f"return self.head(features){finish(next(iter(heads.values())).type)}")
        returns = "torch.Tensor"
    shapes = ", ".join(f"{n} [batch, {', '.join(map(str, s))}]"
                       for n, s in model.spec.input_shapes.items())
    header = "\n".join([
        textwrap.fill(f'"""{_docstring_text(model.spec.name or name)}', LINE_LENGTH), "",
        f"Plain PyTorch written by `blocks export` (blocks {__version__}); it needs only torch,",
        "and safetensors to read weights. The model takes a dict of tensors keyed by input",
        textwrap.fill(f"name: {shapes}. Text and category inputs are ids: the run folder's "
                      "tokenizer files and recipe make them from raw rows.", LINE_LENGTH),
        '"""', ""])
    stdlib = [*sorted(writer.imports), ""] if writer.imports else []
    parts = [header, *stdlib, "import torch", "from torch import nn", "", "",
             *(helper + "\n" for helper in writer.helpers.values()),
             f"class {name}(nn.Module):",
             f'    """{_docstring_text(model.spec.name or name)}, as built by blocks."""', "",
             "    def __init__(self) -> None:", "        super().__init__()",
             *(" " * 8 + line for line in init), "",
             f"    def forward(self, x: dict[str, torch.Tensor]) -> {returns}:",
             *(" " * 8 + line for line in body), "", "", _loader(name)]
    return "\n".join(parts), name


def export_multi_python(model: nn.Module, path: Path, probabilities: bool = False) -> ExportResult:
    code, name = multi_model_source(model, probabilities=probabilities)
    findings = lint_source(code, str(path))
    if findings:
        raise ExportError("the generated source fails `blocks lint`:\n"
                          + "\n".join(str(f) for f in findings))
    module = types.ModuleType(path.stem)
    exec(compile(code, str(path), "exec"), module.__dict__)  # noqa: S102 - the code just written
    with torch.random.fork_rng(devices=[]):
        rebuilt = getattr(module, name)()
    result = rebuilt.load_state_dict(model.state_dict(), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ExportError(f"the generated class's weights do not match the model's (missing: "
                          f"{result.missing_keys[:5]}, unexpected: {result.unexpected_keys[:5]})")
    rebuilt.eval()
    graph, names = NamedInputs(model, probabilities), output_names(model)
    batches = (2, 3, 1)
    for batch in batches:
        x = sample_inputs(model, batch, seed=batch)
        with torch.no_grad():
            want, out = graph(*x.values()), rebuilt(x)
        want = want if isinstance(want, dict) else {names[0]: want}
        got = out if isinstance(out, dict) else {names[0]: out}
        compare(want, got, 0.0, f"the generated class at batch size {batch}")
    with staged(path) as tmp:
        tmp.write_text(code, encoding="utf-8")
    return ExportResult("python", path, "blocks source writer", 0.0, 0.0, batches, names,
                        probabilities, ["the class takes a dict of tensors keyed by "
                                        f"{', '.join(model._input_names)}"])
