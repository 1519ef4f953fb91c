"""Export a built model to the runtimes people deploy on, or to plain PyTorch source.

    result = blocks.export(model, to="onnx", path="model.onnx")   # ExportResult
    print(result.describe())

Every format is reloaded from the written file and compared with the model before `export`
returns (onnxruntime within 1e-5, torch.export and TorchScript within 1e-6, the Python source bit
for bit); a file that does not match is never left under its name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import nn

from blocks.exporters.common import (
    ExportError,
    ExportGraph,
    ExportResult,
    cannot_write,
    check_replace,
    prepared,
)

FORMATS: dict[str, str] = {  # format -> default file suffix
    "onnx": ".onnx",
    "pt2": ".pt2",
    "torchscript": ".pt",
    "python": ".py",
}


def _exporter(fmt: str) -> tuple[Callable[[ExportGraph, Path], ExportResult], tuple[str, ...]]:
    """The format's export function and accepted suffixes (imported only when used)."""
    if fmt == "onnx":
        # lazy: a format loads its libraries only when used
        from blocks.exporters import onnx_export as module

        return module.export_onnx, module.SUFFIXES
    if fmt == "pt2":
        # lazy: a format loads its libraries only when used
        from blocks.exporters import pt2_export as module

        return module.export_pt2, module.SUFFIXES
    if fmt == "torchscript":
        # lazy: a format loads its libraries only when used
        from blocks.exporters import torchscript_export as module

        return module.export_torchscript, module.SUFFIXES
    # lazy: a format loads its libraries only when used
    from blocks.exporters import python_source as module

    return module.export_python, (FORMATS["python"],)  # SUFFIXES left python_source in b3e0934


def export(model: nn.Module, to: str, path: str | Path, *, probabilities: bool = False,
           force: bool = False) -> ExportResult:
    """Write `model` (a built blocks model) as `to` (onnx, pt2, torchscript, python) at `path`,
    reload it and compare it with the model; raises `ExportError` when anything differs.

    `probabilities=True` appends each head's softmax / sigmoid to the exported graph. An
    existing file at `path` is replaced only when it is an earlier export to the same format
    (each export carries a marker), or with `force=True`; a place that cannot be written (no
    permission, no space) is an `ExportError` naming it, with nothing left behind.
    """
    if to not in FORMATS:
        raise ExportError(f"unknown export format {to!r}; choose one of {', '.join(FORMATS)}")
    run, suffixes = _exporter(to)
    target = Path(path)
    if target.suffix not in suffixes:
        raise ExportError(f"{target}: an export to {to} is written to a {' or '.join(suffixes)} "
                          f"file, not {target.suffix or 'a file without a suffix'}")
    check_replace(target, to, force)
    try:
        if getattr(getattr(model, "spec", None), "inputs", None) is not None:
            return _export_multi(model, to, target, probabilities)
        return run(ExportGraph(prepared(model), probabilities), target)
    except OSError as err:  # no permission, no space, a file where a folder should be
        raise ExportError(cannot_write(target, err)) from None


def _export_multi(model: nn.Module, to: str, target: Path, probabilities: bool) -> ExportResult:
    """A multi-input model: ONNX with one named graph input per model input, or a pt2 program
    taking the dict keyed by input name."""
    if to == "python":
        # lazy: a format loads its libraries only when used
        from blocks.exporters.multi_source import export_multi_python

        return export_multi_python(prepared(model), target, probabilities)
    if to not in ("onnx", "pt2"):
        raise ExportError(f"a multi-input model exports to onnx, pt2 or python for now, not {to} "
                          "(torchscript takes one input tensor)")
    # lazy: a format loads its libraries only when used
    from blocks.exporters.multi_export import export_multi_onnx, export_multi_pt2

    run = export_multi_onnx if to == "onnx" else export_multi_pt2
    return run(prepared(model), target, probabilities)


def export_run(source: str | Path, to: str, out: str | Path | None = None, *,
               probabilities: bool = False, force: bool = False) -> ExportResult:
    """Export a run folder's trained model, or a recipe's freshly built one (`blocks export`).

    The file goes to `out`, by default `RUN_DIR/model.<suffix>` for a run and
    `./<recipe name>.<suffix>` for a recipe.
    """
    # lazy: a format loads its libraries only when used
    from blocks.builder.model import build
    from blocks.recipe.loading import load_recipe
    from blocks.run.folder import RECIPE, load

    if to not in FORMATS:
        raise ExportError(f"unknown export format {to!r}; choose one of {', '.join(FORMATS)}")
    source_path = Path(source)
    notes: list[str] = []
    if source_path.is_dir():
        if not (source_path / RECIPE).exists():
            raise ExportError(f"{source_path} is a folder but not a blocks run (no {RECIPE}); "
                              "give a run folder or a recipe")
        model = load(source_path)
        default = source_path / f"model{FORMATS[to]}"
        if model.preprocess_module is not None:
            notes.append("the exported model takes raw inputs, as the run's data source gave them "
                         f"(per sample {list(model.spec.sample_shape)}): its preprocessing is part "
                         "of it")
    else:
        recipe = load_recipe(source)
        model = build(recipe.model, seed=recipe.train.seed)
        stem = source_path.stem if source_path.suffix in (".yaml", ".yml", ".json") else str(source)
        default = Path(f"{stem}{FORMATS[to]}")
        notes.append(f"exported from a recipe: the weights are untrained (initialised with seed "
                     f"{recipe.train.seed}); export a run folder for trained weights")
    result = export(model, to, out if out is not None else default, probabilities=probabilities,
                    force=force)
    if source_path.is_dir() and model.spec.inputs is not None:  # the tokenizers travel along
        # lazy: a format loads its libraries only when used
        from blocks.exporters.multi_export import copy_tokenizers
        from blocks.run.multi_inputs import text_inputs

        categorical = [n for n, s in model.spec.inputs.items() if s.kind == "categorical"]
        notes += copy_tokenizers(source_path, result.path, text_inputs(model), categorical)
    result.notes[:0] = notes
    return result


__all__ = ["FORMATS", "ExportError", "ExportResult", "export", "export_run"]
