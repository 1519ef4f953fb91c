"""A run folder's whole life: create, train, save, load, evaluate, predict.

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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from blocks.builder.model import BlocksModel, build
from blocks.core.digest import digest, verify_digest
from blocks.core.errors import BlocksError, Problem, SpecError
from blocks.core.files import atomic_write, atomic_write_text
from blocks.data.arrays import Splits
from blocks.data.images import IMAGE_SUFFIXES, read_images
from blocks.data.sources import (
    check_data_file,
    load_npz,
    read_csv_lines,
    sniff_delimiter,
    split_target_columns,
    table_columns,
    target_columns,
    target_labels,
)
from blocks.data.splits import load_splits, prepare_targets, raw_inputs
from blocks.inspect.report import PlotsUnavailableError, draw_run_plots
from blocks.layers.external import skip_weight_files
from blocks.recipe.loading import dump_recipe
from blocks.recipe.overrides import apply_sets
from blocks.run.validate import check_recipe, load_recipe
from blocks.spec.preprocess import PreprocessSpec
from blocks.spec.recipe import Recipe
from blocks.train import loggers
from blocks.train.checkpoint import CorruptCheckpointError, unique_tensors
from blocks.train.trainer import Trainer

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
RUN_FILE_PATTERNS = ("confusion*.png", ".*.tmp")


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
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / RECIPE, dump_recipe(recipe, full=True))
    write_weights(model, run_dir / WEIGHTS)
    (run_dir / LEGACY_PREPROCESS).unlink(missing_ok=True)  # now inside recipe + weights
    if not (run_dir / RUN_INFO).exists():
        _write_info(run_dir, {"status": "saved"})
    return run_dir


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
                                     f"({_short(err)}); nothing was loaded") from None
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
        raise RunFolderError(f"{file} is damaged ({_short(err)})") from None
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
        raise RunFolderError(f"{file} is not valid JSON ({_short(err)})") from None
    if not isinstance(info, dict):
        raise RunFolderError(f"{file} must hold a JSON object, found {type(info).__name__}")
    return info


def _write_info(run_dir: Path, info: dict[str, Any]) -> None:
    atomic_write_text(run_dir / RUN_INFO, json.dumps({"format": RUN_FORMAT, **info}, indent=1) + "\n")


def is_run_folder(path: Path) -> bool:
    """True for a folder blocks wrote (its `run.json` carries blocks' format marker)."""
    try:
        info = read_info(path) if path.is_dir() else {}
    except RunFolderError:
        return False
    # runs written before the marker existed: their run.json has these summary keys
    return info.get("format") == RUN_FORMAT or {"wall_time_s", "epochs", "params"} <= set(info)


def _is_run_file(name: str) -> bool:
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
    foreign = sorted(p.name for p in out.iterdir() if not _is_run_file(p.name))
    if foreign:
        raise SpecError(Problem("", "--force will not delete files that blocks did not write: "
                                f"{', '.join(_escape(n) for n in foreign[:5])}"
                                f"{' ...' if len(foreign) > 5 else ''}; move them or choose "
                                "another --out", "foreign_files", str(out)))


def _clear_run_files(out: Path, *, keep: tuple[str, ...] = ()) -> None:
    for entry in out.iterdir():
        if _is_run_file(entry.name) and entry.name not in keep and entry.is_file():
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
            holder = _lock_holder(lock)
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


def _lock_holder(lock: Path) -> dict[str, Any] | None:
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
@dataclass
class RunResult:
    """What `run_recipe` produced: the folder, the trained model and its history."""

    out: Path
    model: BlocksModel
    history: Any
    info: dict[str, Any] = field(default_factory=dict)


def run_recipe(recipe: str | Path | Recipe, out: str | Path | None = None, *,
               epochs: int | None = None, device: str | None = None, seed: int | None = None,
               resume: bool = False, force: bool = False, quiet: bool = True, plots: bool = True,
               dist_info: Any = None, sets: Sequence[str] = ()) -> RunResult:
    """Train a recipe on its data end to end and write its run folder (what `blocks train` does).

    `out` defaults to `runs/<recipe name>`. An existing folder needs `resume` (continue from its
    checkpoint) or `force` (replace a blocks run folder; nothing else is ever deleted).
    `sets` are `KEY=VALUE` overrides of any recipe key (`blocks train --set`), validated like
    the recipe's own keys and recorded in the run's recipe.yaml.
    """
    loaded = apply_sets(recipe if isinstance(recipe, Recipe) else load_recipe(recipe), sets)
    if sets or isinstance(recipe, Recipe):
        check_recipe(loaded)  # fine-tuning prefixes against the model, as a file's are checked
    source = loaded.source_path
    run = with_overrides(loaded, epochs=epochs, device=device, seed=seed)
    run._source_path = source
    main = dist_info is None or dist_info.is_main  # rank 0 alone writes and prints
    train_recipe = _per_rank_device(run, dist_info)
    name = Path(source).stem if source is not None else (run.model.name or "run")
    out = Path(out) if out is not None else Path("runs") / name
    replace = _check_out(out, source, resume=resume, force=force) if main else False
    splits = load_splits(train_recipe)
    model = build_model(splits, device=train_recipe.train.device, seed=train_recipe.train.seed)
    trainer = Trainer(model, train_recipe.train, run_dir=out, quiet=quiet or not main,
                      distributed=dist_info is not None)
    saved = _data_paths_absolute(run.model_copy(update={"model": splits.model_spec}), source)
    lock = run_lock(out) if main else contextlib.nullcontext()
    if main:
        out.mkdir(parents=True, exist_ok=True)
    with lock:
        if main:
            if replace:  # only now: a recipe, data or model that fails above leaves the old run
                _clear_run_files(out, keep=(LOCK,))
            elif not resume and any(p.name != LOCK for p in out.iterdir()):
                raise SpecError(Problem("", f"run folder {out} was filled by another process "
                                        "while this one prepared; pass --force to replace it",
                                        "run_exists", str(out)))
            else:
                _clear_stray_temp_files(out)
            # recipe and marker first: a killed run's folder is recognisable and resumable
            atomic_write_text(out / RECIPE, dump_recipe(saved, full=True))
            _write_info(out, {"status": "running", "started": time.time()})
        if not quiet and main:
            params = sum(p.numel() for p in model.parameters())
            print(f"training {run.model.name or name} ({params:,} parameters) on "
                  f"{splits.info['train']} samples, validating on {splits.info['val']}; device "
                  f"{model.device}; run folder {out}")
        started = time.perf_counter()
        history = trainer.fit(splits.train.data(), splits.val.data() if splits.val else None,
                              resume=resume)
        if not main:
            return RunResult(out, model, history)
        write_weights(model, out / WEIGHTS)
        (out / LEGACY_PREPROCESS).unlink(missing_ok=True)
        info = _run_summary(model, history, trainer, run, started, dist_info)
        _write_info(out, info)
        if plots:
            _draw_plots(out, model, splits, quiet=quiet)
        loggers.finish(trainer, out)  # the finished run folder to MLflow, trackers closed
    if not quiet:
        final = ", ".join(f"{k} {v:.4f}" for k, v in history.last.items() if k.startswith("val/")
                          and k.count("/") <= 2)
        print(f"done in {info['wall_time_s']:.1f}s: {final or 'no validation split'}; saved to {out}")
    return RunResult(out, model, history, info)


def build_model(splits: Splits, **build_kwargs: Any) -> BlocksModel:
    """`blocks.build(splits.model_spec, ...)` with the preprocessing statistics fitted on the
    training split: the model that trains on, and later predicts from, raw inputs."""
    model = build(splits.model_spec, **build_kwargs)
    if model.preprocess_module is not None and splits.train.x is not None:
        model.preprocess_module.fit(splits.train.x)
    return model


def with_overrides(recipe: Recipe, **overrides: Any) -> Recipe:
    """The recipe with `train` overrides (epochs, device, seed) applied, each checked like the
    recipe's own key and named by its command-line flag when wrong."""
    from pydantic import ValidationError

    given = {k: v for k, v in overrides.items() if v is not None}
    if not given:
        return recipe
    try:
        train = type(recipe.train).model_validate(recipe.train.model_dump() | given)
    except ValidationError as err:
        flags = " ".join(f"--{k} {v}" for k, v in given.items())
        problems = [Problem("", (f"--{e['loc'][0]}: " if e["loc"] and e["loc"][0] in given else
                                 f"train.{'.'.join(map(str, e['loc']))} (with {flags}): ")
                            + e["msg"].removeprefix("Value error, "), e["type"])
                    for e in err.errors(include_url=False)]
        raise SpecError(problems) from None
    updated = recipe.model_copy(update={"train": train})
    updated._source_path = recipe.source_path
    return updated


def _per_rank_device(recipe: Recipe, dist_info: Any) -> Recipe:
    if dist_info is None:
        return recipe
    wanted = recipe.train.device
    if (wanted == "auto" and torch.cuda.is_available()) or wanted.startswith("cuda"):
        updated = recipe.model_copy(update={"train": recipe.train.model_copy(
            update={"device": f"cuda:{dist_info.local_rank}"})})  # one GPU per rank
        updated._source_path = recipe.source_path
        return updated
    return recipe


def _check_out(out: Path, source: Path | None, *, resume: bool, force: bool) -> bool:
    """Whether `out` is to be replaced; refuses what may not be touched."""
    if resume:
        if not (out / CHECKPOINT).is_file():
            raise SpecError(Problem("", f"--resume: {out} has no {CHECKPOINT} to continue from",
                                    "no_checkpoint", str(out)))
        return False
    if out.is_symlink() and force:
        check_replaceable(out, source)
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return False
    holder = _lock_holder(out / LOCK) if (out / LOCK).exists() else None
    if holder is not None:
        raise RunFolderError(f"{out} is in use by another blocks process (pid {holder.get('pid')} "
                             f"on {holder.get('host')}); wait for it to finish or choose another "
                             "--out")
    if not force:
        raise SpecError(Problem("", f"run folder {out} already exists; pass --resume to continue "
                                "it, --force to replace it, or --out for a new folder",
                                "run_exists", str(out)))
    check_replaceable(out, source)
    return True


def _clear_stray_temp_files(out: Path) -> None:
    """`.name.<random>.tmp` files left by a write that a kill interrupted (never a finished file)."""
    for entry in out.glob(".*.tmp"):
        entry.unlink(missing_ok=True)


def _data_paths_absolute(recipe: Recipe, source: Path | None) -> Recipe:
    """The recipe with csv/npz paths made absolute: the run folder's copy of the recipe lives
    elsewhere than the original (and is never followed outside the folder without consent)."""
    data = recipe.data
    if data is None or source is None:
        return recipe
    base = Path(source).parent
    for key in ("csv", "npz", "images"):
        src = getattr(data, key)
        if src is not None and not Path(src.path).is_absolute():
            data = data.model_copy(update={key: src.model_copy(
                update={"path": str((base / src.path).resolve())})})
    return recipe.model_copy(update={"data": data})


def _run_summary(model: BlocksModel, history: Any, trainer: Any, recipe: Recipe, started: float,
                 dist_info: Any) -> dict[str, Any]:
    best_key = next((k for k in ("val/accuracy", "val/loss", "train/loss") if k in history.last), None)
    best = history.best(best_key, "max" if best_key and best_key.endswith("accuracy") else "min")
    stopping = recipe.train.early_stopping
    return {"status": "finished", "wall_time_s": round(time.perf_counter() - started, 3),
            "epochs": len(history), "best_epoch": best["epoch"] if best else None,
            "best_metric": best_key, "params": sum(p.numel() for p in model.parameters()),
            "device": str(model.device),
            **({"world_size": dist_info.world_size} if dist_info is not None else {}),
            "final": history.last, "stopped_early": trainer.stopped_early,
            # which epoch's weights model.safetensors holds (restore_best keeps the best one)
            "weights_epoch": (trainer.best["epoch"] if stopping and stopping.restore_best
                              and trainer.best.get("epoch") else len(history))}


def _draw_plots(out: Path, model: BlocksModel, splits: Any, *, quiet: bool) -> None:
    """Training curves and validation confusion matrices, when the plot extra is installed."""
    try:
        written, _ = draw_run_plots(out, model=model,
                                    val_data=splits.val.as_tuple() if splits.val else None)
    except PlotsUnavailableError as err:
        if not quiet:
            print(f"note: {err}")
        return
    if not quiet and written:
        print("plots: " + ", ".join(str(path) for path in written))


# --- evaluate ------------------------------------------------------------------------------------
def evaluate_run(run_dir: str | Path, data: str | Path | None = None, *, split: str | None = None,
                 target: str | list[str] | None = None, trust_paths: bool = False,
                 device: str = "auto") -> dict[str, float]:
    """Metrics of a run's model.

    - `data` a `.csv`/`.npz` file: every row of it, as held-out data (`test/` metrics), read
      with the run's feature names and target column(s) (`target` overrides them);
    - `data` a recipe (`.yaml`): that recipe's data split as it says (`split`, default val);
    - no `data`: the run's own data split (`split`, default val). Paths stored in a run folder
      are not followed outside it unless `trust_paths` (a shared folder may point anywhere).
    """
    run_dir = Path(run_dir)
    model = load(run_dir)
    run_recipe_ = load_recipe(run_dir / RECIPE)
    trainer_spec = run_recipe_.train.model_copy(update={"device": device})
    if data is not None and Path(data).suffix.lower() in (".csv", ".npz"):
        if split is not None:
            raise SpecError(Problem("", "--split applies to a recipe's data, not to a data file "
                                    "(all of whose rows are evaluated)", "bad_argument"))
        x, y = read_labelled_file(Path(data), model, run_recipe_, target=target)
        return Trainer(model, trainer_spec, quiet=True).evaluate((x, y), split="test")
    if data is not None:
        recipe = load_recipe(data)
    else:
        recipe = run_recipe_
        if not trust_paths:
            _refuse_outside_paths(recipe, run_dir)
    splits = load_splits(recipe, model_spec=model.spec)
    name = split or "val"
    chosen = splits.val if name == "val" else splits.train
    if chosen is None:
        raise SpecError(Problem("data.val_fraction", "the recipe's data has no validation split; "
                                "use --split train or a recipe with val_fraction > 0", "empty_split"))
    return Trainer(model, trainer_spec, quiet=True).evaluate(chosen.data(), split=name)


def _refuse_outside_paths(recipe: Recipe, run_dir: Path) -> None:
    data = recipe.data
    for key in ("csv", "npz", "images"):
        src = getattr(data, key, None) if data is not None else None
        if src is None:
            continue
        path = Path(src.path)
        resolved = (run_dir / path).resolve() if not path.is_absolute() else path.resolve()
        if run_dir.resolve() not in resolved.parents:
            raise SpecError(Problem(f"data.{key}.path", f"the run's recipe reads its data from "
                                    f"{_escape(str(path))}, outside the run folder; blocks does not "
                                    "follow paths stored in a run folder on its own: name the "
                                    "data (`blocks evaluate RUN_DIR FILE`) or pass --trust-paths",
                                    "outside_path", str(run_dir / RECIPE)))


def read_labelled_file(path: Path, model: BlocksModel, recipe: Recipe, *,
                       target: str | list[str] | None = None) -> tuple[torch.Tensor, Any]:
    """Raw features and targets of a held-out `.csv`/`.npz`, as the run's data had them."""
    if not path.exists():
        raise SpecError(Problem("", "data file does not exist", "file_not_found", str(path)))
    check_data_file(path, "data")
    spec = model.spec
    if path.suffix.lower() == ".npz":
        npz = recipe.data.npz if recipe.data is not None and recipe.data.npz is not None else None
        x_key = npz.x if npz else "x"
        y_keys = ({"y": target or (npz.y if npz else "y")} if not spec.multi_head
                  else dict(npz.y) if npz and isinstance(npz.y, dict) else {h: h for h in spec.head_specs})
        arrays = load_npz(path, [x_key, *y_keys.values()], "data")
        y = arrays[y_keys["y"]] if not spec.multi_head else {h: arrays[k] for h, k in y_keys.items()}
        x = arrays[x_key]
    else:
        targets = _target_columns(recipe, target, spec)
        rows, lines = read_csv_lines(path, "data", sniff_delimiter(path))
        if len(rows) < 2:
            raise SpecError(Problem("", "needs a header row and at least one data row",
                                    "empty_data", str(path)))
        features = spec.preprocess.features if spec.preprocess and spec.preprocess.features else None
        table = table_columns(rows, path, features=features, targets=targets, lines=lines,
                              **_decoding(spec), target_labels=target_labels(targets, spec))
        x, y = table.x, split_target_columns(table.y, spec)

    return raw_inputs(np.asarray(x), spec), prepare_targets(y, spec)


def _decoding(spec: Any) -> dict[str, Any]:
    """How the run reads CSV cells: its category vocabularies, and missing cells as NaN when
    its preprocessing imputes them (else they are errors)."""
    pre = spec.preprocess
    if pre is None:
        return {}
    return {"categories": pre.categories, "missing_ok": pre.impute is not None,
            "unknown_category": pre.unknown_category}


def _target_columns(recipe: Recipe, target: str | list[str] | None, spec: Any) -> list[str]:
    if target is not None:
        return [target] if isinstance(target, str) else list(target)
    csv = recipe.data.csv if recipe.data is not None else None
    if csv is not None:
        return target_columns(csv.target, spec)
    if not spec.multi_head:
        return ["target"]
    raise SpecError(Problem("", "name the target column(s) with --target: the run was not "
                            "trained from a CSV file", "missing_target"))


# --- predict -------------------------------------------------------------------------------------
@dataclass
class Predictions:
    """Per head: label ids, label names and class probabilities (rows in input order)."""

    labels: dict[str, torch.Tensor]
    probabilities: dict[str, torch.Tensor]
    names: dict[str, list[str]]
    kinds: dict[str, str]

    def table(self) -> tuple[list[str], list[list[Any]]]:
        """A header and rows: `label` (name) per softmax head, `label/<name>` per sigmoid
        label, then `p/<name>` per class; head names prefix them when there are several."""
        header, columns = [], []
        several = len(self.labels) > 1
        for head, lab in self.labels.items():
            prefix = f"{head}/" if several else ""
            names = self.names[head]
            lab = lab.reshape(len(lab), -1)
            if self.kinds[head] == "softmax":
                header.append(f"{prefix}label")
                columns.append([names[i] for i in lab[:, 0].tolist()])
            else:
                for j in range(lab.shape[1]):
                    header.append(f"{prefix}label/{names[j]}")
                    columns.append(lab[:, j].tolist())
            probs = self.probabilities[head]
            for j in range(probs.shape[-1]):
                header.append(f"{prefix}p/{names[j]}")
                columns.append([f"{v:.6f}" for v in probs[:, j].tolist()])
        return header, [list(row) for row in zip(*columns, strict=True)]


def predict_run(model: BlocksModel | str | Path, inputs: Any, *,
                batch_size: int = 1024) -> Predictions:
    """Labels and probabilities for raw inputs: a `.csv`/`.npz` path, an array, lists or a tensor.

    CSV columns are matched by the run's feature names when it has them (a header-less CSV is
    read as feature rows in training order). Non-finite outputs are an error, never a label.
    """
    if not isinstance(model, BlocksModel):
        model = load(model)
    source = None
    if isinstance(inputs, str | Path):
        source = str(inputs)
        inputs = read_feature_file(Path(inputs), model)
    x = model.as_input(inputs)
    if x.dim() < 2 or x.shape[1:] != torch.Size(model.spec.sample_shape):
        got = int(np.prod(x.shape[1:])) if x.dim() > 1 else 1
        raise SpecError(Problem("", f"each input row has {got} values but the model takes "
                                f"{math.prod(model.spec.sample_shape)} per sample (shape "
                                f"{list(model.spec.sample_shape)})", "shape_mismatch", source))
    heads = model.spec.head_specs
    labels: dict[str, list] = {name: [] for name in heads}
    probs: dict[str, list] = {name: [] for name in heads}
    for start in range(0, len(x), batch_size):
        logits = model._eval_logits(x[start:start + batch_size])
        logits = logits if isinstance(logits, dict) else {next(iter(heads)): logits}
        for name, value in logits.items():
            if not bool(torch.isfinite(value).all()):
                row = start + int((~torch.isfinite(value)).any(dim=-1).nonzero()[0])
                raise SpecError(Problem("", f"the model's output for input row {row + 1} is not "
                                        "finite (NaN or inf): the input or the weights hold "
                                        "non-finite or extreme values", "non_finite_output"))
            labels[name].append(heads[name].labels_from_logits(value))
            probs[name].append(heads[name].probabilities(value))
    return Predictions({k: torch.cat(v) for k, v in labels.items()},
                       {k: torch.cat(v) for k, v in probs.items()},
                       {k: model.label_names(k) for k in heads},
                       {k: h.type for k, h in heads.items()})


def read_feature_file(path: Path, model: BlocksModel, *, delimiter: str | None = None) -> np.ndarray:
    """Raw feature rows from `.npz` (array `x`) or CSV (by header name when the run knows its
    feature names; a CSV whose first row is all numbers has no header). Category names become
    their codes and missing cells NaN (when the model imputes), as in training. `delimiter`:
    default the most frequent of `,` `;` tab `|` in the first line."""
    pre = model.spec.preprocess
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        if pre is None or pre.images is None:
            raise SpecError(Problem("", "the model was not trained on image files; give a .csv "
                                    "or .npz of raw inputs", "bad_input", str(path)))
        return read_images(path, model)[0].numpy()
    if not path.is_file():
        raise SpecError(Problem("", "input file does not exist", "file_not_found", str(path)))
    check_data_file(path, "input")
    if path.suffix.lower() == ".npz":
        return load_npz(path, ["x"], "input")["x"]
    rows, lines = read_csv_lines(path, "input", delimiter or sniff_delimiter(path))
    if not rows:
        raise SpecError(Problem("", "the file holds no rows", "empty_data", str(path)))
    features = pre.features if pre is not None and pre.features else None
    return table_columns(rows, path, features=features, targets=[], optional_header=True,
                         lines=lines, **_decoding(model.spec)).x


# --- helpers -------------------------------------------------------------------------------------
def _short(err: BaseException, limit: int = 160) -> str:
    text = str(err)
    return _escape(text if len(text) <= limit else text[:limit] + "...")


def _escape(text: str) -> str:
    """Printable form of a name from a file: control and bidi characters escaped."""
    return "".join(ch if ch.isprintable() and not 0x202A <= ord(ch) <= 0x202E
                   and not 0x2066 <= ord(ch) <= 0x2069 else ch.encode("unicode_escape").decode()
                   for ch in text)
