"""The data a run trained on, as its folder records it: portable paths and a fingerprint.

- `paths_for_run` (in `blocks.run.folder`, which `blocks.save` also uses): the run folder's
  copy of the recipe lives elsewhere than the original, so a data path that was relative (to
  the recipe, or to the working folder for a recipe given as text) is stored relative to the
  run folder (`../../data/train.csv`): moving the project with its runs keeps them working. An
  absolute path stays absolute.
- `data_record`: run.json's `data` entry, per source: the stored path, its size in bytes and a
  SHA-256 of its bytes (of every file, for an image folder).
- `check_run_data`: `blocks evaluate RUN_DIR` with no DATA follows a path stored in the run
  folder outside it only when what is there now has the recorded size and checksum, i.e. it is
  the data the run was trained on. A shared or crafted folder pointing elsewhere (a secret file,
  a device) is refused without opening it: to pass, its run.json would have to hold the target's
  checksum, which only someone who already has its bytes can write. `--trust-paths` skips this.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from blocks.core.errors import Problem, SpecError
from blocks.run.folder import PATH_SOURCES, RECIPE, escape, read_info
from blocks.spec.recipe import Recipe

RECORD = "data"  # run.json key


def data_record(recipe: Recipe, run_dir: Path) -> dict[str, Any]:
    """`{"data": {source: {path, bytes, sha256[, files]}}}` for run.json ({} without a path)."""
    data = recipe.data
    record = {}
    for key in PATH_SOURCES:
        src = getattr(data, key, None) if data is not None else None
        if src is None:
            continue
        found = fingerprint(_resolved(src.path, run_dir))
        if found is not None:
            record[key] = {"path": src.path, **found}
    return {RECORD: record} if record else {}


def check_run_data(recipe: Recipe, run_dir: Path) -> None:
    """Refuse (`SpecError`, located at the run's recipe) a data path stored in the run folder
    that leads outside it, unless what it leads to is the data recorded at training time."""
    data = recipe.data
    recorded = None
    for key in PATH_SOURCES:
        src = getattr(data, key, None) if data is not None else None
        if src is None:
            continue
        resolved = _resolved(src.path, run_dir)
        if run_dir.resolve() in resolved.parents:
            continue
        if recorded is None:
            recorded = _recorded(run_dir)
        entry = recorded.get(key)
        if not isinstance(entry, dict) or entry.get("path") != src.path:
            why = ("the run folder records no size and checksum for it (a run trained before "
                   "blocks recorded them, or a folder not written by `blocks train`)")
        elif not _matches(resolved, entry):
            why = ("what is there no longer has the size and checksum recorded when the run was "
                   "trained (changed or replaced since)")
        else:
            continue
        raise SpecError(Problem(f"data.{key}.path", f"the run's recipe reads its data from "
                                f"{escape(src.path)}, outside the run folder, and {why}; blocks "
                                "follows a path stored in a run folder only to the data the run "
                                "was trained on: name the data (`blocks evaluate RUN_DIR DATA`) "
                                "or pass --trust-paths", "outside_path", str(run_dir / RECIPE)))


def fingerprint(path: Path) -> dict[str, Any] | None:
    """Size and SHA-256 of a regular file, or of a folder's files (every non-hidden regular file
    below it, by relative path); None for anything else (missing, a device, a pipe)."""
    if path.is_file():
        return {"bytes": path.stat().st_size, "sha256": _file_sha256(path)}
    if not path.is_dir():
        return None
    files = _folder_files(path) or []
    total = hashlib.sha256()
    size = 0
    for rel, file in files:
        length = file.stat().st_size
        size += length
        total.update(f"{rel}\0{length}\0{_file_sha256(file)}\n".encode())
    return {"bytes": size, "files": len(files), "sha256": total.hexdigest()}


def _matches(path: Path, entry: dict[str, Any]) -> bool:
    """Cheap checks (kind, count, size) first: a file of another size is never read."""
    if path.is_file():
        if "files" in entry or path.stat().st_size != entry.get("bytes"):
            return False
    elif path.is_dir():
        count = entry.get("files")
        files = _folder_files(path, limit=count if isinstance(count, int) else 0)
        if (files is None or len(files) != count
                or sum(f.stat().st_size for _, f in files) != entry.get("bytes")):
            return False
    else:
        return False
    found = fingerprint(path)
    return found is not None and found.get("sha256") == entry.get("sha256")


def _recorded(run_dir: Path) -> dict[str, Any]:
    entry = read_info(run_dir).get(RECORD)
    return entry if isinstance(entry, dict) else {}


def _resolved(stored: str, run_dir: Path) -> Path:
    """Where a stored path leads (resolved: the run folder may not exist yet when recording)."""
    path = Path(stored)
    return path.resolve() if path.is_absolute() else (run_dir.resolve() / path).resolve()


def _folder_files(root: Path, limit: int | None = None) -> list[tuple[str, Path]] | None:
    """Every non-hidden regular file below `root`, by relative path; None as soon as there are
    more than `limit` (a crafted record pointing at `/` is not walked to the end)."""
    found = []
    for file in root.rglob("*"):
        rel = file.relative_to(root)
        if file.is_file() and not any(part.startswith(".") for part in rel.parts):
            found.append((rel.as_posix(), file))
            if limit is not None and len(found) > limit:
                return None
    return sorted(found)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
