"""What a sweep leaves beside its trials: `sweep.json` (the study's every trial, read back from
its storage), the `best` link to the best trial's run folder, a text table and `trials.png`.

Everything is rebuilt from the study after each trial, so concurrent workers sharing a study
only ever write a newer complete picture (each file is replaced atomically).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
from pathlib import Path
from typing import Any

from blocks.core.files import atomic_write_text
from blocks.run.report import PlotsUnavailableError

SWEEP_INFO = "sweep.json"
SWEEP_FORMAT = "blocks-sweep/1"
BEST = "best"
PLOT = "trials.png"
TRIALS = "trials"


def trial_dir(out: Path, number: int) -> Path:
    """The run folder of trial `number`: `trials/trial-0007`."""
    return out / TRIALS / f"trial-{number:04d}"


def trial_rows(study: Any) -> list[dict[str, Any]]:
    """One plain row per trial, in trial order: what sweep.json lists and the table prints."""
    retried = {t.user_attrs.get("retry_of") for t in study.get_trials(deepcopy=False)}
    rows = []
    for t in study.get_trials(deepcopy=False):
        state = t.state.name.lower()
        if state == "fail" and t.number in retried:
            state = "killed"  # stopped by a kill or Ctrl-C; re-run with the same parameters
        steps = sorted(t.intermediate_values)
        row: dict[str, Any] = {
            "trial": t.number, "state": state,
            "value": _finite(t.value) if t.value is not None else None,
            "params": dict(t.params), "epochs": steps[-1] if steps else 0,
            "run": t.user_attrs.get("run"),
        }
        if state == "pruned" and steps:
            row["pruned_at"] = {"epoch": steps[-1], "value": _finite(t.intermediate_values[steps[-1]])}
        for key in ("error", "retry_of", "host"):
            if key in t.user_attrs:
                row[key] = t.user_attrs[key]
        if t.datetime_start and t.datetime_complete and state != "killed":
            row["seconds"] = round((t.datetime_complete - t.datetime_start).total_seconds(), 3)
        rows.append(row)
    return rows


def summary(study: Any, *, out: Path, storage: str, metric: str, space: dict[str, Any],
            target: int) -> dict[str, Any]:
    """sweep.json's content: the study, its counts, the best trial and every row."""
    rows = trial_rows(study)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    best = best_row(study, rows)
    return {"format": SWEEP_FORMAT, "study": study.study_name, "storage": storage,
            "metric": metric, "direction": study.direction.name.lower(), "trials_wanted": target,
            "space": space, "counts": counts,
            "best": None if best is None else {k: best.get(k) for k in ("trial", "value", "params",
                                                                          "run", "host")},
            "trials": rows}


def best_row(study: Any, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    complete = [r for r in rows if r["state"] == "complete" and r["value"] is not None]
    if not complete:
        return None
    pick = max if study.direction.name == "MAXIMIZE" else min
    return pick(complete, key=lambda r: (r["value"], -r["trial"]) if pick is max
                else (r["value"], r["trial"]))


def write_summary(out: Path, info: dict[str, Any], *, plot: bool = True) -> None:
    """sweep.json, the `best` link and (with matplotlib) trials.png, each replaced atomically."""
    atomic_write_text(out / SWEEP_INFO, json.dumps(info, indent=1) + "\n")
    best = info.get("best")
    if best and best.get("run") and (out / best["run"]).is_dir():
        point_best(out, best["run"])
    if plot:
        with contextlib.suppress(PlotsUnavailableError):  # the plot is optional
            draw_trials(out / PLOT, info)


def point_best(out: Path, run: str) -> None:
    """`out/best` -> the best trial's folder: a relative symbolic link swapped in atomically
    (`blocks export out/best`); where links are not allowed, `best.txt` names the folder."""
    link, temp = out / BEST, out / f".{BEST}.{os.getpid()}.tmp"
    try:
        temp.unlink(missing_ok=True)
        temp.symlink_to(run, target_is_directory=True)
        os.replace(temp, link)
    except OSError:
        temp.unlink(missing_ok=True)
        atomic_write_text(out / f"{BEST}.txt", run + "\n")


def table(info: dict[str, Any], *, limit: int | None = None) -> str:
    """The trials as a text table, best marked with `*`: what `blocks sweep` prints."""
    rows = info["trials"]
    keys = list(info["space"])
    best = (info.get("best") or {}).get("trial")
    head = ["trial", "state", info["metric"], "epochs", *keys]
    lines = [head]
    shown = rows if limit is None else rows[-limit:]
    for row in shown:
        value = row["value"] if row["value"] is not None else (row.get("pruned_at") or {}).get("value")
        lines.append([f"{row['trial']}{'*' if row['trial'] == best else ''}", row["state"],
                      "" if value is None else f"{value:.4f}", str(row["epochs"]),
                      *[_short(row["params"].get(k)) for k in keys]])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    text = "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)
    if limit is not None and len(rows) > limit:
        text += f"\n({len(rows) - limit} earlier trials in sweep.json)"
    return text


def draw_trials(path: Path, info: dict[str, Any]) -> Path:
    """Each trial's metric by trial number (pruned ones at the value they were pruned at) and
    the best so far; needs matplotlib (`pip install 'blocks[plot]'`)."""
    try:
        # optional: matplotlib (the plot extra)
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotsUnavailableError("trials.png needs matplotlib: pip install 'blocks[plot]'") from None
    figure = Figure(figsize=(6, 3.5))
    axes = figure.add_subplot()
    maximize = info["direction"] == "maximize"
    done = [(r["trial"], r["value"]) for r in info["trials"] if r["state"] == "complete"
            and r["value"] is not None]
    pruned = [(r["trial"], r["pruned_at"]["value"]) for r in info["trials"]
              if r["state"] == "pruned" and r.get("pruned_at")]
    if done:
        axes.scatter(*zip(*done, strict=True), label="complete", color="C0")
        best, so_far = None, []
        for number, value in done:
            best = value if best is None or (value > best if maximize else value < best) else best
            so_far.append((number, best))
        last = max(r["trial"] for r in info["trials"])
        if last > so_far[-1][0]:
            so_far.append((last, so_far[-1][1]))  # the line runs to the latest trial
        axes.step(*zip(*so_far, strict=True), where="post", color="C1", label="best so far")
    if pruned:
        axes.scatter(*zip(*pruned, strict=True), marker="x", color="C3", label="pruned")
    axes.set_xlabel("trial")
    axes.set_ylabel(info["metric"])
    axes.set_title(f"sweep {info['study']}")
    if done or pruned:
        axes.legend(loc="best")
    figure.tight_layout()
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    figure.savefig(temp, format="png", dpi=100)
    os.replace(temp, path)
    return path


def worker() -> dict[str, Any]:
    """This process, as recorded on the trials it runs (a killed one is recognised by it)."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)
