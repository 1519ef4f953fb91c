"""Exports of a multi-input model. ONNX: one named graph input per model input (`review`,
`plan`, ..., text as int64 token ids), a dynamic batch axis on each, checked with onnxruntime
against the model on batches drawn per input. pt2: a `torch.export` program whose module takes
the dict keyed by input name, reloaded and compared. The run's tokenizer files are copied beside the `.onnx`, so
raw text can be turned into the ids the graph takes (the result's notes say so)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from torch import nn

from blocks.exporters.common import (
    CHECK_BATCHES,
    EXPORT_BATCH,
    ExportError,
    ExportResult,
    as_outputs,
    compare,
    head_outputs,
    output_names,
    quiet_export_warnings,
    require_modules,
    staged,
)

TOLERANCE = 1e-5


class NamedInputs(nn.Module):
    """The model's dict forward as positional tensors in `model.inputs` order (what ONNX
    graphs take), optionally followed by each head's softmax / sigmoid."""

    def __init__(self, model: nn.Module, probabilities: bool) -> None:
        super().__init__()
        self.model, self.names, self.probabilities = model, tuple(model._input_names), probabilities
        self.eval()

    def forward(self, *tensors: torch.Tensor):
        return head_outputs(self.model, self.model(dict(zip(self.names, tensors, strict=True))),
                            self.probabilities)


def sample_inputs(model: nn.Module, batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random batch per input: ids below each input's vocabulary, N(0, 1) floats."""
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for name, spec in model.spec.inputs.items():
        shape = (batch, *spec.sample_shape)
        if spec.dtype == "int64":
            out[name] = torch.randint(0, spec.vocab_size, shape, generator=generator)
        else:
            out[name] = torch.randn(shape, generator=generator)
    return out


def export_multi_onnx(model: nn.Module, path: Path, probabilities: bool = False) -> ExportResult:
    require_modules(("onnx", "onnxscript", "onnxruntime"), "onnx", "ONNX export")
    import onnx
    import onnxruntime

    graph = NamedInputs(model, probabilities)
    names = output_names(model)
    clash = set(graph.names) & set(names)
    if clash:
        raise ExportError(f"input and head names must differ for ONNX: {', '.join(sorted(clash))}")
    x = sample_inputs(model, EXPORT_BATCH)
    batch = torch.export.Dim("batch")
    with staged(path) as tmp:
        try:
            with quiet_export_warnings(), torch.no_grad():
                torch.onnx.export(graph, tuple(x.values()), str(tmp), dynamo=True,
                                  input_names=list(graph.names), output_names=list(names),
                                  dynamic_shapes=(tuple({0: batch} for _ in graph.names),),
                                  verbose=False)
            onnx.checker.check_model(str(tmp), full_check=True)
            session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - the exporter's reason goes into the message
            raise ExportError(f"ONNX export of the multi-input model failed: "
                              f"{type(err).__name__}: {str(err).strip().splitlines()[0][:300]}") from None
        got_inputs = tuple(i.name for i in session.get_inputs())
        if got_inputs != graph.names:
            raise ExportError(f"the ONNX graph's inputs are {got_inputs}, expected {graph.names}")
        worst = 0.0
        for size in (EXPORT_BATCH, *CHECK_BATCHES):
            sample = sample_inputs(model, size, seed=size)
            with torch.no_grad():
                want = as_outputs(graph(*sample.values()), names)
            got = as_outputs(session.run(None, {k: v.numpy() for k, v in sample.items()}), names)
            worst = max(worst, compare(want, got, TOLERANCE, f"onnxruntime at batch size {size}"))
    return ExportResult("onnx", path, "torch.onnx.export (dynamo)", worst, TOLERANCE,
                        (EXPORT_BATCH, *CHECK_BATCHES), names, probabilities,
                        [f"graph inputs: {', '.join(graph.names)} (one per model input; text as "
                         "int64 token ids)"])


class DictInput(nn.Module):
    """The model's dict forward, optionally followed by each head's softmax / sigmoid."""

    def __init__(self, model: nn.Module, probabilities: bool) -> None:
        super().__init__()
        self.inner = NamedInputs(model, probabilities)

    def forward(self, x: dict[str, torch.Tensor]):
        return self.inner(*(x[name] for name in self.inner.names))


def export_multi_pt2(model: nn.Module, path: Path, probabilities: bool = False) -> ExportResult:
    graph = DictInput(model, probabilities).eval()
    names = output_names(model)
    batch = torch.export.Dim("batch")
    try:
        with quiet_export_warnings(), torch.no_grad():
            program = torch.export.export(graph, (sample_inputs(model, EXPORT_BATCH),), dynamic_shapes={
                "x": {name: {0: batch} for name in model._input_names}})
    except Exception as err:  # noqa: BLE001 - torch.export's reasons are long; keep them whole
        raise ExportError(f"torch.export could not capture the multi-input model: "
                          f"{type(err).__name__}: {str(err)[:500]}") from None
    worst = 0.0
    with staged(path) as tmp:
        torch.export.save(program, str(tmp))
        loaded = torch.export.load(str(tmp)).module()
        for size in (EXPORT_BATCH, *CHECK_BATCHES):
            sample = sample_inputs(model, size, seed=size)
            with torch.no_grad():
                want = as_outputs(graph(sample), names)
                got = as_outputs(loaded(sample), names)
            worst = max(worst, compare(want, got, 1e-6, f"the reloaded program at batch size {size}"))
    return ExportResult("pt2", path, "torch.export", worst, 1e-6, (EXPORT_BATCH, *CHECK_BATCHES),
                        names, probabilities, [f"the program's module takes a dict keyed by "
                                               f"{', '.join(model._input_names)}"])


def copy_tokenizers(run_dir: Path, target: Path, names: list[str],
                    categorical: list[str] = ()) -> list[str]:
    """The run's tokenizer files beside the export; the notes that say so."""
    notes = [f"input {name!r} takes category ids: 1 + the name's index in "
             f"model.inputs.{name}.categories of the run's recipe.yaml, 0 for unknown"
             for name in categorical]
    for name in names:
        source = run_dir / f"tokenizer.{name}.json"
        dest = target.parent / source.name
        if source.resolve() != dest.resolve():
            shutil.copyfile(source, dest)
        notes.append(f"input {name!r} takes token ids: the tokenizer is {dest} (Hugging Face "
                     "tokenizers: Tokenizer.from_file(...).encode(text[:64 * max_length]).ids, "
                     "padded and cut to the input's max_length, as blocks does)")
    return notes
