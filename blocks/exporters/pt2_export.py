"""`torch.export` programs (`.pt2`) with a dynamic batch dimension, reloaded with
`torch.export.load` and compared."""

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
    staged,
)

TOLERANCE = 1e-6
SUFFIXES = (".pt2",)


def export_pt2(graph: ExportGraph, path: Path) -> ExportResult:
    names = output_names(graph.model)
    x = sample_input(graph.model, EXPORT_BATCH)
    try:
        with quiet_export_warnings(), torch.no_grad():
            program = torch.export.export(graph, (x,),
                                          dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    except Exception as err:  # noqa: BLE001 - torch.export's reasons are long; keep them whole
        raise ExportError(f"torch.export could not capture the model with a dynamic batch "
                          f"dimension: {type(err).__name__}: {err}") from err
    with staged(path) as tmp:
        buffer = io.BytesIO()  # torch's zip writer aborts the process on a full disk: write it here
        torch.export.save(program, buffer, extra_files={MARKER: marker("pt2")})
        tmp.write_bytes(buffer.getbuffer())
        del buffer
        worst = check_pt2(graph, tmp, names)
    return ExportResult("pt2", path, "torch.export", worst, TOLERANCE, CHECK_BATCHES, names,
                        graph.probabilities)


def check_pt2(graph: ExportGraph, path: Path, names: tuple[str, ...]) -> float:
    loaded = torch.export.load(str(path)).module()
    return check_at_batches(  # e.g. a batch size the program specialised to fails here
        graph, loaded, names, TOLERANCE, "the reloaded torch.export program",
        lambda batch, err: f"the reloaded torch.export program fails at batch size {batch}: "
                           f"{type(err).__name__}: {err}")
