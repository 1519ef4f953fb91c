"""ONNX: `torch.onnx.export` (the dynamo exporter first) with a dynamic batch axis, checked by
`onnx.checker` and compared with onnxruntime against the PyTorch model."""

from __future__ import annotations

from pathlib import Path

import torch

from blocks.core.files import place_problem
from blocks.exporters.common import (
    CHECK_BATCHES,
    EXPORT_BATCH,
    MARKER_KEY,
    ExportError,
    ExportGraph,
    ExportResult,
    cannot_write,
    check_at_batches,
    marker,
    output_names,
    quiet_export_warnings,
    require_modules,
    sample_input,
    staged,
)

TOLERANCE = 1e-5
SUFFIXES = (".onnx",)
EXTERNAL_DATA_BYTES = 1 << 30  # weights above 1 GiB go to a `.onnx.data` file (protobuf caps at 2)
INPUT = "x"  # the ONNX input's name (`input` if a head is called `x`)


def export_onnx(graph: ExportGraph, path: Path) -> ExportResult:
    require_modules(("onnx", "onnxscript", "onnxruntime"), "onnx", "ONNX export")
    names = output_names(graph.model)
    x = sample_input(graph.model, EXPORT_BATCH)
    weight_bytes = sum(t.numel() * t.element_size() for t in graph.state_dict().values())
    notes: list[str] = []
    with staged(path) as tmp:
        try:
            exporter = _export_dynamo(graph, x, tmp, names, weight_bytes > EXTERNAL_DATA_BYTES)
        except Exception as err:  # noqa: BLE001 - fall back to the TorchScript-based exporter
            if place_problem(err) is not None:  # the disk, not the exporter: no second try
                raise ExportError(cannot_write(path, err)) from None
            notes.append(f"the dynamo exporter failed ({type(err).__name__}: {_first_line(err)}); "
                         "used the TorchScript-based exporter")
            for leftover in tmp.parent.iterdir():
                leftover.unlink()
            exporter = _export_legacy(graph, x, tmp, names)
        mark_onnx(tmp)
        worst = check_onnx(graph, tmp, names)
    return ExportResult("onnx", path, exporter, worst, TOLERANCE, CHECK_BATCHES, names,
                        graph.probabilities, notes)


def mark_onnx(path: Path) -> None:
    """Record in the file's metadata that `blocks export` wrote it (so a re-export may replace
    it); the graph and the weights, external ones included, are left as written."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    entry = model.metadata_props.add()
    entry.key, entry.value = MARKER_KEY, marker("onnx")
    onnx.save(model, str(path))


def input_name(names: tuple[str, ...]) -> str:
    return INPUT if INPUT not in names else "input"


def _export_dynamo(graph: ExportGraph, x: torch.Tensor, path: Path, names: tuple[str, ...],
                   external: bool) -> str:
    batch = torch.export.Dim("batch")
    with quiet_export_warnings(), torch.no_grad():
        # dynamic_shapes is keyed by the forward's argument; input_names names the ONNX input
        torch.onnx.export(graph, (x,), str(path), dynamo=True, input_names=[input_name(names)],
                          output_names=list(names), dynamic_shapes={INPUT: {0: batch}},
                          external_data=external, verbose=False)
    return "torch.onnx.export (dynamo)"


def _export_legacy(graph: ExportGraph, x: torch.Tensor, path: Path, names: tuple[str, ...]) -> str:
    axes = {input_name(names): {0: "batch"}, **{name: {0: "batch"} for name in names}}
    try:
        with quiet_export_warnings(), torch.no_grad():
            torch.onnx.export(graph, (x,), str(path), dynamo=False, input_names=[input_name(names)],
                              output_names=list(names), dynamic_axes=axes)
    except Exception as err:  # noqa: BLE001 - any exporter failure is reported as such
        if place_problem(err) is not None:
            raise ExportError(cannot_write(path, err)) from None
        raise ExportError(f"ONNX export failed with both exporters: {type(err).__name__}: "
                          f"{_first_line(err)}") from err
    return "torch.onnx.export (TorchScript-based)"


def check_onnx(graph: ExportGraph, path: Path, names: tuple[str, ...]) -> float:
    """`onnx.checker` on the file, then onnxruntime against the model at every check batch."""
    import onnx
    import onnxruntime

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as err:
        raise ExportError(f"the exported ONNX file fails onnx.checker: {_first_line(err)}") from None
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ExportError(_runtime_failure(graph, err)) from None
    got_names = tuple(o.name for o in session.get_outputs())
    if got_names != names:
        raise ExportError(f"the ONNX graph's outputs are {got_names}, expected {names}")
    key = input_name(names)
    return check_at_batches(graph, lambda x: session.run(None, {key: x.numpy()}), names,
                            TOLERANCE, "onnxruntime",
                            lambda batch, err: _runtime_failure(graph, err))


def _runtime_failure(graph: ExportGraph, err: Exception) -> str:
    dtype = graph.model._input_dtype
    hint = "" if dtype in (torch.float32, torch.int64) else (
        f"; the model computes in {dtype}, for which onnxruntime's CPU kernels are incomplete: "
        "build it in float32 to export to ONNX")
    return f"onnxruntime cannot run the exported file: {_first_line(err)}{hint}"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
