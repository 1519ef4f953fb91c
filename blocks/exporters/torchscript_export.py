"""TorchScript: the model traced (its forward has Python-side input checks that `torch.jit.script`
cannot compile), saved, reloaded with `torch.jit.load` and compared at other batch sizes, which
also catches a batch size baked into the trace."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from blocks.exporters.common import (
    CHECK_BATCHES,
    EXPORT_BATCH,
    MARKER,
    ExportError,
    ExportGraph,
    ExportResult,
    check_at_batches,
    marker,
    output_names,
    quiet_export_warnings,
    sample_input,
    short_error,
    staged,
)

TOLERANCE = 1e-6
SUFFIXES = (".pt", ".ts")


def export_torchscript(graph: ExportGraph, path: Path) -> ExportResult:
    names = output_names(graph.model)
    x = sample_input(graph.model, EXPORT_BATCH)
    try:
        with quiet_export_warnings(), torch.no_grad():
            # strict=False: a multi-head model returns a dict
            traced = torch.jit.trace(graph, (x,), strict=False, check_trace=False)
    except Exception as err:  # noqa: BLE001 - report the tracer's reason
        raise ExportError(f"torch.jit.trace failed: {type(err).__name__}: {err}") from err
    with staged(path) as tmp, quiet_export_warnings():
        buffer = io.BytesIO()  # torch's zip writer aborts the process on a full disk: write it here
        torch.jit.save(traced, buffer, _extra_files={MARKER: marker("torchscript")})
        tmp.write_bytes(buffer.getbuffer())
        del buffer
        worst = check_torchscript(graph, tmp, names)
    notes = ["TorchScript is deprecated in recent torch releases; prefer --to pt2 (torch.export) "
             "or onnx for new deployments"]
    return ExportResult("torchscript", path, "torch.jit.trace", worst, TOLERANCE, CHECK_BATCHES,
                        names, graph.probabilities, notes)


def check_torchscript(graph: ExportGraph, path: Path, names: tuple[str, ...]) -> float:
    loaded = torch.jit.load(str(path), map_location="cpu")
    return check_at_batches(  # e.g. a batch size baked into the trace fails here
        graph, loaded, names, TOLERANCE, "the reloaded TorchScript module",
        lambda batch, err: f"the reloaded TorchScript module fails at batch size {batch}: "
                           f"{short_error(err)}")
