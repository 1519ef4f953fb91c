"""The run folder itself: its files, `save` and `load`, weights with their digest, run.json,
the lock and the rules for replacing a folder. Training into one is `blocks.run.training`;
evaluating and predicting from one, `blocks.run.predicting`.

The CLI verbs (`blocks train/evaluate/predict`) and Python (`blocks.run_recipe`, `blocks.load`,
`blocks.save`, `blocks.evaluate_run`, `blocks.predict_run`) call these functions, so one folder
gives one answer whichever way it is used. What a folder holds:

- `recipe.yaml`: the recipe, its model spec including the `preprocess` that training applied;
- `model.safetensors`: the weights *and* the preprocessing statistics (buffers), with a SHA-256
  of the tensor data that `load` verifies;
- `run.json`: the marker that says blocks wrote this folder (`format`), its `status`
  (`running`, `finished`, `saved`) and the run's summary numbers;
- while training: `checkpoint.safetensors`, `history.json`, `metrics.csv`, `metrics.jsonl`,
  plots, and `.lock` (the pid of the process writing the folder).

Nothing is pickled. `--force` deletes only these files, and only in a folder marked by `run.json`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from blocks.builder.model import BlocksModel, build
from blocks.core.digest import digest, verify_digest
from blocks.core.errors import BlocksError, Problem, SpecError
from blocks.core.files import (
    STAGING_SUFFIX,
    atomic_write,
    atomic_write_text,
    remove_stale_staging,
)
from blocks.layers.external import skip_weight_files
from blocks.recipe.loading import dump_recipe
from blocks.run.multi_inputs import TOKENIZER_PATTERN, attach_tokenizers, save_tokenizers
from blocks.run.validate import load_recipe
from blocks.spec.preprocess import PreprocessSpec
from blocks.spec.recipe import Recipe
from blocks.train.checkpoint import CorruptCheckpointError, unique_tensors

RECIPE = "recipe.yaml"
WEIGHTS = "model.safetensors"
RUN_INFO = "run.json"
LOCK = ".lock"
LEGACY_PREPROCESS = "preprocess.json"  # runs from before preprocessing moved into the model
RUN_FORMAT = "blocks-run/1"
WEIGHTS_FORMAT = "blocks/1"
CHECKPOINT = "checkpoint.safetensors"
# every file a run consists of: `--force` deletes these and nothing else
RUN_FILES = (RECIPE, WEIGHTS, RUN_INFO, CHECKPOINT, LEGACY_PREPROCESS, "history.json",
             "metrics.csv", "metrics.jsonl", "curves.png", LOCK)
# the last two: a multi-input run's tokenizers, a killed export's staging folder
RUN_FILE_PATTERNS = ("confusion*.png", ".*.tmp", TOKENIZER_PATTERN, f".*{STAGING_SUFFIX}")


class RunFolderError(BlocksError):
    """A run folder that cannot be used as asked: missing, damaged, locked, not ours."""


# --- save / load ---------------------------------------------------------------------------------
def save(model: BlocksModel, path: str | Path, *, recipe: Recipe | None = None) -> Path:
    """Write `recipe.yaml` and `model.safetensors` (weights and preprocessing statistics).

    Without `recipe`, saving into a folder that already holds a recipe for the same model keeps
    that recipe's `data:` and `train:` sections; a different model there is refused rather than
    silently replacing the run it belongs to.
    """
    run_dir = Path(path)
    if recipe is None:
        recipe = _recipe_to_keep(run_dir, model)
    elif recipe.model != model.spec:
        raise SpecError(Problem("", "save: `recipe.model` is not the model being saved; pass "
                                "the recipe the model was built from", "recipe_mismatch",
                                str(run_dir)))
    else:  # relative data paths start at the recipe's folder; the copy in run_dir starts there
        recipe = paths_for_run(recipe, recipe.source_path, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / RECIPE, dump_recipe(recipe, full=True))
    write_weights(model, run_dir / WEIGHTS)
    save_tokenizers(model, run_dir)  # a text input's tokenizer travels with the weights
    (run_dir / LEGACY_PREPROCESS).unlink(missing_ok=True)  # now inside recipe + weights
    if not (run_dir / RUN_INFO).exists():
        write_info(run_dir, {"status": "saved"})
    return run_dir


PATH_SOURCES = ("csv", "parquet", "npz", "images")  # the `data:` sources that name a path


def paths_for_run(recipe: Recipe, source: Path | None, out: Path) -> Recipe:
    """The recipe with each relative data path rebased from the recipe's folder (or, for a recipe
    without a file, the working folder) onto the run folder `out`."""
    data = recipe.data
    if data is None:
        return recipe
    base = Path(source).parent if source is not None else Path.cwd()
    run_dir = out.resolve()
    for key in PATH_SOURCES:
        src = getattr(data, key)
        if src is None or Path(src.path).is_absolute():
            continue
        target = (base / src.path).resolve()
        try:
            stored = os.path.relpath(target, run_dir)
        except ValueError:  # another drive (Windows): no relative path exists
            stored = str(target)
        data = data.model_copy(update={key: src.model_copy(update={"path": stored})})
    rebased = recipe.model_copy(update={"data": data})
    rebased._source_path = (run_dir / RECIPE).resolve()  # its paths now start at the run folder
    return rebased


def _recipe_to_keep(run_dir: Path, model: BlocksModel) -> Recipe:
    if not (run_dir / RECIPE).exists():
        return Recipe(model=model.spec)
    existing = load_recipe(run_dir / RECIPE)
    if existing.model == model.spec:
        return existing.model_copy(update={"model": model.spec})
    if existing.data is None and existing.train == Recipe(model=model.spec).train:
        return Recipe(model=model.spec)  # a bare saved model: nothing else to keep
    raise RunFolderError(
        f"{run_dir} holds the run of a different model (its {RECIPE} has other `model:` settings "
        "and `data:`/`train:` sections that would no longer describe the weights); save into "
        "another folder, or pass recipe= to replace the run deliberately")


def write_weights(model: torch.nn.Module, path: Path) -> Path:
    """safetensors with a SHA-256 of the tensor data in its metadata (checked by `load`)."""
    tensors = unique_tensors(model.state_dict())
    metadata = {"format": WEIGHTS_FORMAT, "sha256": digest(tensors)}
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def load(path: str | Path, *, device: str | torch.device = "cpu") -> BlocksModel:
    """The saved model, in eval mode, ready to predict on raw inputs.

    The spec (with its preprocessing) comes from `recipe.yaml`, weights and preprocessing
    statistics from `model.safetensors`, whose checksum is verified: a damaged file is a
    `CorruptCheckpointError` naming it, never a model with silently wrong weights.
    """
    run_dir = Path(path)
    if not (run_dir / RECIPE).is_file():
        raise SpecError(Problem("", f"{run_dir} is not a blocks run folder (no {RECIPE})",
                                "not_a_run", str(run_dir)))
    recipe = load_recipe(run_dir / RECIPE)
    spec, legacy = recipe.model, _legacy_preprocess(run_dir, recipe)
    if legacy is not None:
        spec = spec.model_copy(update={"preprocess": legacy[0]})
    # seeded: the weights are overwritten anyway, and the caller's global RNG stays untouched;
    # external backbones' own weight files are not read again (model.safetensors holds all)
    with skip_weight_files():  # and not model.weights either: the run's own come next
        model = build(spec, device="cpu", seed=0, weights=False)
    state = read_weights(run_dir / WEIGHTS)
    if legacy is not None:
        state |= legacy[1]
    load_state_checked(model, state, run_dir / WEIGHTS)
    attach_tokenizers(model, run_dir)  # multi-input runs: raw text and category names in
    model.eval()
    return model.to(device) if str(device) != "cpu" else model


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a weights file, checksum verified; no pickle is ever read."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not path.is_file():
        raise CorruptCheckpointError(f"{path.parent} has no weights file {path.name}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CorruptCheckpointError(f"weights {path} are damaged or not a safetensors file "
                                     f"({short(err)}); nothing was loaded") from None
    expected = metadata.get("sha256")
    if expected is not None:
        verify_digest(tensors, expected, path)
    return tensors


def load_state_checked(model: torch.nn.Module, state: dict[str, torch.Tensor], where: Path) -> None:
    """Load a complete state dict or nothing: missing, extra and misshapen tensors are named."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k} {list(state[k].shape)} (model: {list(own[k].shape)})" for k in own
             if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = [f"missing {', '.join(missing[:5])}" if missing else "",
                 f"unexpected {', '.join(unexpected[:5])}" if unexpected else "",
                 f"wrong shape {', '.join(wrong[:3])}" if wrong else ""]
        raise CorruptCheckpointError(f"weights {where} do not fit the recipe's model ("
                                     + "; ".join(p for p in parts if p) + "); nothing was loaded")
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CorruptCheckpointError(f"weights {where} hold non-finite values in "
                                     f"{', '.join(bad[:5])}; nothing was loaded")
    model.load_state_dict(state)


def _legacy_preprocess(run_dir: Path, recipe: Recipe):
    """A `preprocess.json` of an older run, as (spec, buffers), when the recipe has none."""
    file = run_dir / LEGACY_PREPROCESS
    if recipe.model.preprocess is not None or not file.is_file():
        return None
    try:
        old = json.loads(file.read_text(encoding="utf-8"))
        mean, std, source = old.get("mean"), old.get("std"), old.get("source_shape")
        size = len(mean) if mean is not None else math.prod(source or old["input_shape"])
        spec = PreprocessSpec(raw_shape=[size], scale=old.get("scale", 1.0),
                              standardize=mean is not None, features=old.get("features"),
                              resize_from=source if source != old["input_shape"] else None)
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise RunFolderError(f"{file} is damaged ({short(err)})") from None
    buffers = ({"preprocess.mean": torch.tensor(mean, dtype=torch.float32),
                "preprocess.std": torch.tensor(std, dtype=torch.float32)} if mean is not None else {})
    return spec, buffers


# --- the run folder as a place: marker, lock, what --force may delete ---------------------------
def read_info(run_dir: Path) -> dict[str, Any]:
    """`run.json` as a dict ({} when absent); a damaged one is a `RunFolderError`."""
    file = run_dir / RUN_INFO
    if not file.is_file():
        return {}
    try:
        info = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise RunFolderError(f"{file} is not valid JSON ({short(err)})") from None
    if not isinstance(info, dict):
        raise RunFolderError(f"{file} must hold a JSON object, found {type(info).__name__}")
    return info


def write_info(run_dir: Path, info: dict[str, Any]) -> None:
    atomic_write_text(run_dir / RUN_INFO, json.dumps({"format": RUN_FORMAT, **info}, indent=1) + "\n")


def is_run_folder(path: Path) -> bool:
    """True for a folder blocks wrote (its `run.json` carries blocks' format marker)."""
    try:
        info = read_info(path) if path.is_dir() else {}
    except RunFolderError:
        return False
    # runs written before the marker existed: their run.json has these summary keys
    return info.get("format") == RUN_FORMAT or {"wall_time_s", "epochs", "params"} <= set(info)


def is_run_file(name: str) -> bool:
    from fnmatch import fnmatch

    return name in RUN_FILES or any(fnmatch(name, pattern) for pattern in RUN_FILE_PATTERNS)


def check_replaceable(out: Path, recipe_path: Path | None = None) -> None:
    """`--force` replaces a blocks run folder and nothing else: never a symlink, the working
    folder, home, the recipe's folder, a folder without blocks' marker, or one holding any file
    that is not part of a run (a user's file is never deleted)."""
    if out.is_symlink():
        raise SpecError(Problem("", "--force will not replace a symbolic link; pass the folder it "
                                f"points to ({os.path.realpath(out)}) or another --out",
                                "unsafe_out", str(out)))
    target = out.resolve()
    protected = [Path.cwd().resolve(), Path.home().resolve()]
    if recipe_path is not None:
        protected.append(Path(recipe_path).resolve().parent)
    if any(target == p or target in p.parents for p in protected) or not out.is_dir():
        raise SpecError(Problem("", "--force will not delete this folder: it holds (or is above) "
                                "the working folder, the recipe or your home; choose another --out",
                                "unsafe_out", str(out)))
    if not is_run_folder(out) and any(out.iterdir()):
        raise SpecError(Problem("", f"--force only replaces folders written by blocks (marked by "
                                f"their {RUN_INFO}), and this one is not; choose another --out",
                                "not_a_run", str(out)))
    foreign = sorted(p.name for p in out.iterdir() if not is_run_file(p.name))
    if foreign:
        raise SpecError(Problem("", "--force will not delete files that blocks did not write: "
                                f"{', '.join(escape(n) for n in foreign[:5])}"
                                f"{' ...' if len(foreign) > 5 else ''}; move them or choose "
                                "another --out", "foreign_files", str(out)))


def clear_run_files(out: Path, *, keep: tuple[str, ...] = ()) -> None:
    remove_stale_staging(out)  # what an export killed mid-write left (never a live one's)
    for entry in out.iterdir():
        if is_run_file(entry.name) and entry.name not in keep and entry.is_file():
            entry.unlink(missing_ok=True)


@contextlib.contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Exclusive ownership of a run folder for one process: `.lock` holds its pid and host.

    A second writer is refused naming the holder; a lock whose process is gone (killed) is
    stale and taken over.
    """
    lock = out / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = lock_holder(lock)
            if holder is not None:
                raise RunFolderError(
                    f"{out} is in use by another blocks process (pid {holder.get('pid')} on "
                    f"{holder.get('host')}); wait for it to finish or choose another --out") from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as handle:
            json.dump(me, handle)
        break
    else:
        raise RunFolderError(f"could not take the lock {lock}")
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if json.loads(lock.read_text()).get("pid") == me["pid"]:
                lock.unlink()


def lock_holder(lock: Path) -> dict[str, Any] | None:
    """The live process holding `lock`, or None when the lock is stale."""
    try:
        holder = json.loads(lock.read_text())
        pid = int(holder["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        # unreadable: being written right now, or junk; junk older than a minute is stale
        try:
            return {} if time.time() - lock.stat().st_mtime < 60 else None
        except OSError:
            return None
    if holder.get("host") not in (None, socket.gethostname()):
        return holder  # another machine's process: cannot check, assume alive
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return holder
    return holder


# --- training ------------------------------------------------------------------------------------


def short(err: BaseException, limit: int = 160) -> str:
    text = str(err)
    return escape(text if len(text) <= limit else text[:limit] + "...")


def escape(text: str) -> str:
    """Printable form of a name from a file: control and bidi characters escaped."""
    return "".join(ch if ch.isprintable() and not 0x202A <= ord(ch) <= 0x202E
                   and not 0x2066 <= ord(ch) <= 0x2069 else ch.encode("unicode_escape").decode()
                   for ch in text)
