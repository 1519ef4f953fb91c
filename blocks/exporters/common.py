"""What every export format shares: the graph that is exported, sample inputs, the comparison
that decides success, and staging (files appear under their final name only once verified)."""

from __future__ import annotations

import contextlib
import copy
import errno
import importlib.util
import json
import os
import shutil
import signal
import threading
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from blocks.builder.model import BlocksModel
from blocks.core.errors import ExportError, escape_name
from blocks.core.files import place_problem, staging_folder
from blocks.core.version import __version__

EXPORT_BATCH = 2  # the example batch a graph is exported with
CHECK_BATCHES = (3, 1)  # batch sizes the reloaded export is compared at (other than EXPORT_BATCH)

Outputs = dict[str, torch.Tensor]


@dataclass
class ExportResult:
    """What was written and how closely the reloaded file reproduced the model."""

    format: str
    path: Path
    exporter: str  # the tool that wrote it, e.g. "torch.onnx.export (dynamo)"
    max_abs_diff: float  # largest |reloaded - model| over every output and checked batch
    tolerance: float  # 0.0 = bit for bit
    batch_sizes: tuple[int, ...]  # the batch sizes the reloaded file was run at
    outputs: tuple[str, ...]  # output names, in order
    probabilities: bool = False
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        match = ("bit for bit" if self.tolerance == 0.0
                 else f"within {self.tolerance:g} (max |diff| {self.max_abs_diff:.2g})")
        what = "probabilities" if self.probabilities else "logits"
        batches = ", ".join(map(str, self.batch_sizes))
        return (f"wrote {self.path} ({self.format}, {self.exporter}); reloaded, its {what} "
                f"({', '.join(self.outputs)}) match the model {match} at batch sizes {batches}")


def require_modules(names: tuple[str, ...], extra: str, what: str) -> None:
    """Raise one `ExportError` naming every missing package and the extra that installs them."""
    missing = [name for name in names if importlib.util.find_spec(name) is None]
    if missing:
        raise ExportError(f"{what} needs {', '.join(missing)} (not installed); "
                          f"install them with: pip install 'blocks[{extra}]'")


def output_names(model: nn.Module) -> tuple[str, ...]:
    """Head names for a multi-head model (its dict's keys), else one name."""
    heads = getattr(model, "heads", None)
    if isinstance(heads, nn.ModuleDict):
        return tuple(heads.keys())
    return ("output",)


class ExportGraph(nn.Module):
    """The computation that is exported: the model's own forward (input checks, preprocessing,
    backbone, heads), optionally followed by each head's softmax / sigmoid."""

    def __init__(self, model: nn.Module, probabilities: bool) -> None:
        super().__init__()
        self.model = model
        self.probabilities = probabilities
        self.eval()  # what is exported and compared is always the eval-mode model

    def forward(self, x: torch.Tensor):
        return head_outputs(self.model, self.model(x), self.probabilities)


def head_outputs(model: nn.Module, out: Any, probabilities: bool) -> Any:
    """A blocks model's outputs as exported: logits, or each head's probabilities."""
    if not probabilities:
        return out
    heads = model.spec.head_specs
    if isinstance(out, dict):
        return {name: heads[name].probabilities(value) for name, value in out.items()}
    return next(iter(heads.values())).probabilities(out)


def prepared(model: nn.Module) -> nn.Module:
    """A CPU, eval-mode copy: exporting never moves the caller's model or flips its mode."""
    if not isinstance(model, BlocksModel):
        raise ExportError(f"blocks.export takes a model built by blocks (BlocksModel), got "
                          f"{type(model).__name__}; see blocks.from_module for hand-written models")
    return copy.deepcopy(model).to("cpu").eval()


def sample_input(model: nn.Module, batch: int, seed: int = 0) -> torch.Tensor:
    """A random batch the model accepts, drawn from a private generator (global RNG untouched)."""
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, *model._sample_shape)
    dtype = model._input_dtype
    if dtype.is_floating_point:
        x = torch.randn(shape, generator=generator, dtype=torch.float64)
        pre = getattr(model, "preprocess_module", None)
        if pre is not None:  # raw inputs that look like the data: N(0, 1) after preprocessing
            if pre.standardize:
                x = x * pre.std.double() + pre.mean.double()
            x = x / pre.scale
        return x.to(dtype)
    vocab = min((m.num_embeddings for m in model.modules() if isinstance(m, nn.Embedding)), default=2)
    return torch.randint(0, vocab, shape, generator=generator, dtype=dtype)


def as_outputs(value, names: tuple[str, ...]) -> Outputs:
    """A model output (tensor, dict, or sequence in `names` order) as {name: tensor}."""
    if isinstance(value, torch.Tensor):
        value = [value]
    if isinstance(value, dict):
        return {name: torch.as_tensor(value[name]) for name in names}
    return {name: torch.as_tensor(v) for name, v in zip(names, value, strict=True)}


@torch.no_grad()
def reference(graph: ExportGraph, x: torch.Tensor) -> Outputs:
    """The model's own outputs, in eval mode (an exporter may have restored another mode)."""
    return as_outputs(graph.eval()(x), output_names(graph.model))


def compare(expected: Outputs, got: Outputs, tolerance: float, what: str) -> float:
    """Max |got - expected|; an `ExportError` when it exceeds `tolerance` or shapes differ."""
    if set(expected) != set(got):
        raise ExportError(f"{what} returned outputs {sorted(got)}, the model {sorted(expected)}")
    worst = 0.0
    for name, want in expected.items():
        have = got[name]
        if tuple(have.shape) != tuple(want.shape):
            raise ExportError(f"{what}: output {name!r} has shape {tuple(have.shape)}, the model's "
                              f"has {tuple(want.shape)}")
        if tolerance == 0.0:
            if not torch.equal(have.to(want.dtype), want):
                diff = (have.double() - want.double()).abs().max().item()
                raise ExportError(f"{what}: output {name!r} differs from the model's "
                                  f"(max |diff| {diff:.3g}; expected bit-for-bit equality)")
            continue
        diff = (have.double() - want.double()).abs().max().item() if want.numel() else 0.0
        # relative to the outputs' magnitude once it exceeds 1 (float rounding scales with it)
        scale = max(1.0, want.double().abs().max().item()) if want.numel() else 1.0
        if not diff <= tolerance * scale:  # also catches NaN
            raise ExportError(f"{what}: output {name!r} differs from the model's by {diff:.3g} "
                              f"(tolerance {tolerance:g} x max(1, max |output|) = "
                              f"{tolerance * scale:.3g})")
        worst = max(worst, diff)
    return worst


def check_at_batches(graph: ExportGraph, run: Callable[[torch.Tensor], object],
                     names: tuple[str, ...], tolerance: float, what: str,
                     failure: Callable[[int, Exception], str]) -> float:
    """Max |diff| of a reloaded export (`run`) against the model at `CHECK_BATCHES`, batch sizes
    other than the export's (a size baked into a graph fails here); `failure(batch, err)` words
    an error the reloaded file raised."""
    worst = 0.0
    for batch in CHECK_BATCHES:
        x = sample_input(graph.model, batch, seed=batch)
        try:
            with torch.no_grad():
                got = as_outputs(run(x), names)
        except Exception as err:  # noqa: BLE001 - the runtime's own reason goes into the message
            raise ExportError(failure(batch, err)) from None
        worst = max(worst, compare(reference(graph, x), got, tolerance,
                                   f"{what} at batch size {batch}"))
    return worst


def short_error(err: BaseException) -> str:
    """One line for a message: the last line of an error carrying a (TorchScript) traceback,
    else the first."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    return lines[-1] if any("Traceback" in line for line in lines) else lines[0]


@contextlib.contextmanager
def staged(target: Path) -> Iterator[Path]:
    """A path with `target`'s name inside a fresh folder beside it. On success every file the
    exporter wrote there moves beside `target` (a model plus, e.g., its `.data` file); on any
    error, Ctrl-C or SIGTERM nothing is left behind and an older file at `target` stays as it
    was. A folder left by kill -9 is removed by the next export (or `train --force`) there."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        folder = staging_folder(target)
    except OSError as err:
        raise ExportError(cannot_write(target, err)) from None
    try:
        with _terminate_as_exit():
            yield folder / target.name
            for written in sorted(folder.iterdir()):
                written.replace(target.parent / written.name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def cannot_write(target: Path, err: BaseException) -> str:
    """The message for an export its place refused (permissions, no space, a file for a folder)."""
    reason = place_problem(err) or getattr(err, "strerror", None) or type(err).__name__
    blocking = next((p for p in target.parents if p.exists() or p.is_symlink()), None)
    if blocking is not None and not blocking.is_dir():
        reason = f"{escape_name(blocking)} is a file, not a folder"
    full = getattr(err, "errno", None) == errno.ENOSPC or reason == os.strerror(errno.ENOSPC)
    hint = "; free some space or choose another --out" if full else "; choose another --out"
    return f"{escape_name(target)}: cannot write the export here ({reason}){hint}"


@contextlib.contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """SIGTERM (a `kill`, a job scheduler's stop) while an export is staged: exit through the
    `finally` that removes the staging folder, instead of dying with it on disk."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    try:
        before = signal.signal(signal.SIGTERM, stop)
    except (ValueError, OSError):  # not settable here (an embedded interpreter)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


# --- what `blocks export` wrote: a marker inside each file, so a re-export may replace it --------
MARKER = "blocks.json"  # pt2 / TorchScript extra file; the ONNX metadata key is MARKER_KEY
MARKER_KEY = "blocks.export"
PYTHON_MARK = "Plain PyTorch written by `blocks export`"


def marker(fmt: str) -> str:
    """The marker's text: which tool wrote the file, and as what."""
    return json.dumps({"written_by": "blocks export", "format": fmt, "blocks": __version__})


def _marked(text: str | bytes | None, fmt: str) -> bool:
    try:
        data = json.loads(text) if text else None
    except (ValueError, TypeError):
        return False
    return isinstance(data, dict) and data.get("written_by") == "blocks export" \
        and data.get("format") == fmt


def written_by_export(path: Path, fmt: str) -> bool:
    """Whether `path` is a file `blocks export --to fmt` wrote (its marker says so)."""
    try:
        if not path.is_file() or path.is_symlink():
            return False
        if fmt == "python":
            with open(path, "rb") as handle:
                return PYTHON_MARK.encode() in handle.read(4096)
        if fmt in ("pt2", "torchscript"):
            if not zipfile.is_zipfile(path):
                return False
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if n.endswith(f"/extra/{MARKER}")]
                return len(names) == 1 and _marked(archive.read(names[0]), fmt)
        if fmt == "onnx":
            import onnx  # optional: only an ONNX export reaches here, with onnx installed

            model = onnx.load(str(path), load_external_data=False)
            props = {p.key: p.value for p in model.metadata_props}
            return _marked(props.get(MARKER_KEY), fmt)
    except Exception:  # noqa: BLE001 - a file that cannot be read as the format is not ours
        return False
    return False


def check_replace(target: Path, fmt: str, force: bool) -> None:
    """`--out` may replace a previous export of the same format; anything else only with
    `force` (as `train --force`), and never a folder, a device or other non-regular file."""
    if target.is_symlink() and not force:
        raise ExportError(f"{escape_name(target)} is a symbolic link; pass --force to replace the "
                          "link (not what it points to), or choose another --out")
    if not target.exists() and not target.is_symlink():
        return
    if target.is_dir():
        raise ExportError(f"{escape_name(target)} is a folder; give the file to write")
    if not target.is_symlink() and not target.is_file():
        raise ExportError(f"{escape_name(target)} is not a regular file; choose another --out")
    if force or written_by_export(target, fmt):
        return
    raise ExportError(f"{escape_name(target)} already exists and is not a previous `blocks "
                      f"export --to {fmt}`; pass --force to replace it, or choose another --out")


@contextlib.contextmanager
def quiet_export_warnings() -> Iterator[None]:
    """The exporters' deprecation and tracer chatter is not the user's problem; errors still are."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        yield
