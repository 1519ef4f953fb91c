"""Training pictures and a short text report for a run folder.

A run folder holds `recipe.yaml`, `model.safetensors`, `history.json` (one dict per epoch:
`train/loss`, `val/accuracy`, or `train/<head>/loss` for named heads, plus `lr`, `time`) and
`run.json` (`wall_time_s`, `best_epoch`, `params`, ...). `draw_run_plots` writes `curves.png`
(loss and metrics per head, train vs validation) and, for softmax heads, `confusion.png`
(`confusion_<head>.png` for named heads) on the validation split; `report` adds the text.

matplotlib is optional (`pip install 'blocks[plot]'`); without it the text report still works.
Figures are built with `matplotlib.figure.Figure`, never `pyplot`: no global state, no GUI.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from blocks.core.errors import BlocksError
from blocks.core.files import atomic_write
from blocks.data import load_splits
from blocks.inspect.summary import summarize
from blocks.recipe.loading import load_recipe
from blocks.run.folder import load
from blocks.spec.model import SINGLE_HEAD, ModelSpec
from blocks.spec.recipe import Recipe
from blocks.train.features import n_samples, take, to_device

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from blocks.builder.model import BlocksModel

__all__ = ["PLOT_INSTALL_HINT", "PlotsUnavailableError", "ReportError", "RunReport",
           "confusion_matrix", "draw_run_plots", "plot_confusion", "plot_history", "report"]

PLOT_INSTALL_HINT = "pip install 'blocks[plot]'"
SPLITS = ("train", "val", "test")
CURVES_FILE = "curves.png"


class ReportError(BlocksError, ValueError):
    """A run folder that cannot be reported on (missing or unreadable files)."""


class PlotsUnavailableError(BlocksError, ImportError):
    """matplotlib is not installed."""


def _figure_class() -> type[Figure]:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotsUnavailableError(f"plots need matplotlib, which is not installed; "
                                    f"install it with: {PLOT_INSTALL_HINT}") from None
    return Figure


# --- reading a run folder ------------------------------------------------------------------------
@dataclass
class Run:
    path: Path
    recipe: Recipe
    history: list[dict[str, Any]]
    info: dict[str, Any]


def read_run(run_dir: str | Path) -> Run:
    path = Path(run_dir)
    if not path.is_dir():
        raise ReportError(f"{path}: no such run folder")
    if not (path / "recipe.yaml").exists():
        raise ReportError(f"{path}: not a blocks run folder (no recipe.yaml)")

    recipe = load_recipe(path / "recipe.yaml")
    history = _read_json(path / "history.json", list)
    for index, record in enumerate(history):  # a run folder is untrusted input: check its shape
        if not isinstance(record, dict):
            raise ReportError(f"{path / 'history.json'}: entry {index} is a "
                              f"{type(record).__name__}, expected an epoch record (object)")
        epoch = record.get("epoch", index + 1)
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
            raise ReportError(f"{path / 'history.json'}: entry {index} has epoch "
                              f"{str(epoch)[:20]!r}, expected a whole number >= 1")
    info = _read_json(path / "run.json", dict) if (path / "run.json").exists() else {}
    return Run(path, recipe, history, info)


def _read_json(file: Path, kind: type) -> Any:
    if not file.exists():
        raise ReportError(f"{file}: missing (a run folder has it once an epoch has finished)")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as err:
        raise ReportError(f"{file}: unreadable JSON ({str(err)[:120]})") from None
    if not isinstance(data, kind):
        raise ReportError(f"{file}: expected a JSON {'list' if kind is list else 'object'}, "
                          f"got {type(data).__name__}")
    return data


# --- curves --------------------------------------------------------------------------------------
Series = dict[str, dict[str, dict[str, tuple[list[int], list[float]]]]]  # head -> metric -> split


def history_series(history: Sequence[dict[str, Any]], spec: ModelSpec | None = None) -> Series:
    """`{head: {metric: {split: (epochs, values)}}}` from per-epoch records. Single-head keys
    (`val/loss`) go under `output`; with named heads, `train/loss` (the weighted total) goes
    under `total` and `train/<head>/loss` under `<head>`."""
    multi = spec is not None and spec.multi_head
    series: Series = {}
    for index, record in enumerate(history):
        epoch = int(record.get("epoch", index + 1))
        for key, value in record.items():
            parts = key.split("/")
            if parts[0] not in SPLITS or len(parts) not in (2, 3) or not _is_number(value):
                continue
            if len(parts) == 2:
                head, metric = ("total" if multi else SINGLE_HEAD), parts[1]
            else:
                head, metric = parts[1], parts[2]
            epochs, values = (series.setdefault(head, {}).setdefault(metric, {})
                              .setdefault(parts[0], ([], [])))
            epochs.append(epoch)
            values.append(float(value))
    return series


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _metric_order(metrics: Sequence[str]) -> list[str]:
    return sorted(metrics, key=lambda m: (m != "loss", m != "accuracy", m))


def plot_history(history: Sequence[dict[str, Any]], spec: ModelSpec | None = None, *,
                 title: str | None = None) -> Figure:
    """Loss and metric curves, one row per head (`total` first for named heads), one axis per
    metric (loss first), train vs validation on each axis. Returns the matplotlib Figure."""
    Figure = _figure_class()
    from matplotlib.ticker import MaxNLocator

    series = history_series(history, spec)
    if not series:
        raise ReportError("the history has no train/val metrics to plot")
    heads = sorted(series, key=lambda h: (h != "total", h))
    cols = max(len(m) for m in series.values())
    fig = Figure(figsize=(4.2 * cols, 3.2 * len(heads)), layout="constrained")
    grid = fig.subplots(len(heads), cols, squeeze=False)
    single = heads == [SINGLE_HEAD]
    for row, head in enumerate(heads):
        metrics = _metric_order(list(series[head]))
        for col in range(cols):
            ax = grid[row][col]
            if col >= len(metrics):
                fig.delaxes(ax)
                continue
            metric = metrics[col]
            for split in SPLITS:
                if split in series[head][metric]:
                    epochs, values = series[head][metric][split]
                    ax.plot(epochs, values, marker="o" if len(epochs) < 30 else None,
                            markersize=3, label={"val": "validation"}.get(split, split))
            ax.set_title(metric if single else f"{head}: {metric}")
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


# --- confusion matrices --------------------------------------------------------------------------
def confusion_matrix(model: BlocksModel, x: torch.Tensor, y: torch.Tensor | dict[str, torch.Tensor],
                     head: str = SINGLE_HEAD, *, batch_size: int = 1024) -> torch.Tensor:
    """`[classes, classes]` counts, rows the true class, columns the predicted one, for a softmax
    head. The model is used through `predict` (eval mode, no gradients, mode restored)."""
    spec = model.spec.head_specs[head]
    if spec.type != "softmax":
        raise ReportError(f"head {head!r} is {spec.type}; confusion matrices are for softmax heads")
    classes = spec.classes
    targets = y[head] if isinstance(y, dict) else y
    predicted = []
    for start in range(0, n_samples(x), batch_size):
        out = model.predict(to_device(take(x, slice(start, start + batch_size)), model.device))
        predicted.append((out[head] if isinstance(out, dict) else out).cpu())
    pred = torch.cat(predicted).long().reshape(-1)
    true = targets.long().reshape(-1).cpu()
    if len(true) != len(pred):
        raise ReportError(f"{len(true)} targets for {len(pred)} predictions of head {head!r}")
    return torch.bincount(true * classes + pred, minlength=classes * classes).reshape(classes, classes)


def plot_confusion(matrix: torch.Tensor, labels: Sequence[str] | None = None, *,
                   title: str = "confusion matrix (validation)") -> Figure:
    """A confusion matrix as an image with counts written in the cells (up to 20 classes)."""
    Figure = _figure_class()
    counts = matrix.cpu().numpy()
    classes = counts.shape[0]
    names = list(labels) if labels else [str(i) for i in range(classes)]
    size = min(2.5 + 0.45 * classes, 16)
    fig = Figure(figsize=(size + 1, size), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8)
    if classes <= 30:
        ax.set_xticks(range(classes), names, rotation=45 if max(map(len, names)) > 3 else 0)
        ax.set_yticks(range(classes), names)
    if classes <= 20:
        peak = counts.max() if counts.size else 0
        for i in range(classes):
            for j in range(classes):
                ax.text(j, i, str(int(counts[i, j])), ha="center", va="center", fontsize=8,
                        color="white" if peak and counts[i, j] > peak / 2 else "black")
    total = int(counts.sum())
    correct = int(counts.trace())
    accuracy = f", accuracy {correct / total:.1%}" if total else ""
    ax.set_title(f"{title}\n{total} samples{accuracy}")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return fig


# --- the run folder's pictures -------------------------------------------------------------------
ValData = tuple[torch.Tensor, Any] | Any  # (X, y) or an object with .x and .y


def draw_run_plots(run_dir: str | Path, *, val_data: ValData | None = None,
                   model: BlocksModel | None = None) -> tuple[list[Path], list[str]]:
    """Write `curves.png` and, for softmax heads, the validation confusion matrices into the run
    folder. Returns the files written and notes on what was skipped (and why). `val_data`
    defaults to the recipe's validation split (`blocks.data.load_splits`); `model` to the run's
    saved weights (`blocks.load`). Raises `PlotsUnavailableError` without matplotlib."""
    _figure_class()
    run = read_run(run_dir)
    written: list[Path] = []
    notes: list[str] = []
    if history_series(run.history, run.recipe.model):
        fig = plot_history(run.history, run.recipe.model, title=run.recipe.model.name)
        written.append(_save(fig, run.path / CURVES_FILE))
    else:
        notes.append("curves skipped: history.json has no train/val metrics yet")
    softmax_heads = [name for name, head in run.recipe.model.head_specs.items()
                     if head.type == "softmax"]
    if not softmax_heads:
        return written, notes
    try:
        model = model if model is not None else _load_model(run.path)
        x, y = _val_split(run.recipe) if val_data is None else _as_pair(val_data)
    except (BlocksError, ImportError, OSError) as err:
        notes.append(f"confusion matrix skipped: {err}")
        return written, notes
    multi = run.recipe.model.multi_head
    for head in softmax_heads:
        matrix = confusion_matrix(model, x, y, head)
        labels = run.recipe.model.head_specs[head].labels
        title = f"{head}: confusion matrix (validation)" if multi else "confusion matrix (validation)"
        name = f"confusion_{head}.png" if multi else "confusion.png"
        written.append(_save(plot_confusion(matrix, labels, title=title), run.path / name))
    return written, notes


def _save(fig: Figure, path: Path) -> Path:
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def _load_model(run_dir: Path) -> BlocksModel:
    return load(run_dir)


def _val_split(recipe: Recipe) -> tuple[torch.Tensor, Any]:
    splits = load_splits(recipe)
    if splits.val is None:
        raise ReportError("the recipe has no validation split (data.val_fraction is 0)")
    return _as_pair(splits.val)


def _as_pair(data: ValData) -> tuple[torch.Tensor, Any]:
    if isinstance(data, tuple | list) and len(data) == 2:
        return data[0], data[1]
    if hasattr(data, "x") and hasattr(data, "y"):
        return data.x, data.y
    raise ReportError(f"validation data must be (X, y) or have .x and .y, got {type(data).__name__}")


# --- the text report -----------------------------------------------------------------------------
@dataclass
class RunReport:
    """What `blocks report` prints; `plots` are the files (re)drawn, `notes` what was skipped."""

    run_dir: Path
    name: str
    params: int | None
    epochs: int
    best_epoch: int | None
    best_by: str | None
    final: dict[str, float]
    wall_time_s: float | None
    plots: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        lines = [f"run: {self.run_dir} ({self.name})",
                 f"parameters: {self.params:,}" if self.params is not None else "parameters: ?",
                 f"epochs: {self.epochs}"
                 + (f"; best epoch: {self.best_epoch}" if self.best_epoch is not None else "")
                 + (f" (by {self.best_by})" if self.best_by else ""),
                 f"wall time: {_duration(self.wall_time_s)}"]
        if self.final:
            lines.append("final metrics:")
            names = sorted({k.split("/", 1)[1] for k in self.final},
                           key=lambda m: (m.split("/")[-1] != "loss", m))
            splits = [s for s in SPLITS if any(k.startswith(s + "/") for k in self.final)]
            width = max(len(n) for n in names)
            lines.append(f"  {'':<{width}}  " + "  ".join(f"{s:>10}" for s in splits))
            for metric in names:
                cells = [self.final.get(f"{s}/{metric}") for s in splits]
                lines.append(f"  {metric:<{width}}  " + "  ".join(
                    f"{_fmt(v):>10}" for v in cells))
        if self.plots:
            lines.append("plots: " + ", ".join(str(p) for p in self.plots))
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()


def report(run_dir: str | Path, *, plots: bool = True, val_data: ValData | None = None,
           model: BlocksModel | None = None) -> RunReport:
    """Read a run folder, (re)draw its plots unless `plots=False`, and summarise it."""
    run = read_run(run_dir)
    final = {k: float(v) for k, v in (run.history[-1] if run.history else {}).items()
             if k.split("/")[0] in SPLITS and _is_number(v)}
    best_epoch, best_by = _best_epoch(run)
    params = run.info.get("params")
    if not isinstance(params, int):
        params = summarize(run.recipe).total_params  # on the meta device: cheap
    wall = run.info.get("wall_time_s")
    if not _is_number(wall):
        times = [r["time"] for r in run.history if _is_number(r.get("time"))]
        wall = float(sum(times)) if times else None
    result = RunReport(run.path, run.recipe.model.name or "model", params, len(run.history),
                       best_epoch, best_by, final, wall)
    if plots:
        try:
            result.plots, result.notes = draw_run_plots(run.path, val_data=val_data, model=model)
        except PlotsUnavailableError:
            result.notes.append(f"plots skipped: matplotlib is not installed; install it with: "
                                f"{PLOT_INSTALL_HINT}")
    return result


def _best_epoch(run: Run) -> tuple[int | None, str | None]:
    best = run.info.get("best_epoch")
    if isinstance(best, int):
        return best, run.info.get("monitor") if isinstance(run.info.get("monitor"), str) else None
    for key in ("val/loss", "train/loss"):
        scored = [(r[key], int(r.get("epoch", i + 1))) for i, r in enumerate(run.history)
                  if _is_number(r.get(key)) and not math.isnan(r[key])]
        if scored:
            return min(scored)[1], key
    return None, None


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"
