"""`run_recipe`: a recipe trained end to end into its run folder (what `blocks train` does):
load and check the recipe, read the data, build, train, write weights, run.json and plots."""


from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from blocks.builder.model import BlocksModel, build
from blocks.core.errors import Problem, SpecError
from blocks.core.files import atomic_write_text
from blocks.data.arrays import Splits
from blocks.data.splits import load_splits
from blocks.recipe.loading import dump_recipe, locate_in_recipe
from blocks.recipe.overrides import apply_sets
from blocks.run.data_record import data_record
from blocks.run.folder import (
    CHECKPOINT,
    LEGACY_PREPROCESS,
    LOCK,
    RECIPE,
    WEIGHTS,
    RunFolderError,
    check_replaceable,
    clear_run_files,
    lock_holder,
    paths_for_run,
    run_lock,
    write_info,
    write_weights,
)
from blocks.run.multi_inputs import save_tokenizers
from blocks.run.report import PlotsUnavailableError, draw_run_plots
from blocks.run.validate import check_recipe, load_recipe
from blocks.spec.recipe import Recipe
from blocks.train import loggers
from blocks.train.trainer import Callback, Trainer


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
               dist_info: Any = None, sets: Sequence[str] = (),
               callbacks: Sequence[Callback] = ()) -> RunResult:
    """Train a recipe on its data end to end and write its run folder (what `blocks train` does).

    `out` defaults to `runs/<recipe name>`. An existing folder needs `resume` (continue from its
    checkpoint) or `force` (replace a blocks run folder; nothing else is ever deleted).
    `sets` are `KEY=VALUE` overrides of any recipe key (`blocks train --set`), validated like
    the recipe's own keys and recorded in the run's recipe.yaml. `callbacks` are the
    Trainer's per-epoch hook, `fn(trainer, record)` after every epoch (a sweep prunes from it:
    an exception raised there stops training, leaving the folder's run.json `running`).
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
    try:
        splits = load_splits(train_recipe)
    except SpecError as err:  # at the recipe line the data disagrees with, as `validate` says
        raise locate_in_recipe(err, run, skip=[s.split("=", 1)[0].strip() for s in sets]) \
            from None
    model = build_model(splits, device=train_recipe.train.device, seed=train_recipe.train.seed)
    trainer = Trainer(model, train_recipe.train, run_dir=out, quiet=quiet or not main,
                      distributed=dist_info is not None, callbacks=callbacks)
    saved = paths_for_run(run.model_copy(update={"model": splits.model_spec}), source, out)
    record = data_record(saved, out) if main else {}  # what evaluate may follow back to
    lock = run_lock(out) if main else contextlib.nullcontext()
    if main:
        out.mkdir(parents=True, exist_ok=True)
    with lock:
        if main:
            if replace:  # only now: a recipe, data or model that fails above leaves the old run
                clear_run_files(out, keep=(LOCK,))
            elif not resume and any(p.name != LOCK for p in out.iterdir()):
                raise SpecError(Problem("", f"run folder {out} was filled by another process "
                                        "while this one prepared; pass --force to replace it",
                                        "run_exists", str(out)))
            else:
                clear_stray_temp_files(out)
            # recipe and marker first: a killed run's folder is recognisable and resumable
            atomic_write_text(out / RECIPE, dump_recipe(saved, full=True))
            write_info(out, {"status": "running", "started": time.time(), **record})
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
        save_tokenizers(model, out)
        (out / LEGACY_PREPROCESS).unlink(missing_ok=True)
        info = _run_summary(model, history, trainer, run, started, dist_info) | record
        write_info(out, info)
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
    if getattr(splits, "raw_inputs", None) is not None:  # a multi-input table's tokenizers
        model.raw_encoder = splits.raw_inputs
    module = model.preprocess_module
    if module is not None and splits.train.x is not None:
        module.fit(splits.train.x)
    elif module is not None and hasattr(splits.train.dataset, "statistics"):
        # a table read in chunks: its statistics come from one bounded pass over the split
        for name, value in splits.train.dataset.statistics().items():
            buffer = getattr(module, name)
            buffer.copy_(torch.as_tensor(value).reshape(buffer.shape).to(buffer.dtype))
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
    holder = lock_holder(out / LOCK) if (out / LOCK).exists() else None
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


def clear_stray_temp_files(out: Path) -> None:
    """`.name.<random>.tmp` files left by a write that a kill interrupted (never a finished file)."""
    for entry in out.glob(".*.tmp"):
        entry.unlink(missing_ok=True)


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


def _val_pair(splits: Any) -> Any:
    """The validation tensors for the confusion matrix; of a table read in chunks, its first
    100,000 rows (memory stays bounded)."""
    if splits.val is None:
        return None
    if splits.info.get("streamed"):
        return splits.val.dataset.head(100_000)
    return splits.val.as_tuple()


def _draw_plots(out: Path, model: BlocksModel, splits: Any, *, quiet: bool) -> None:
    """Training curves and validation confusion matrices, when the plot extra is installed."""
    try:
        written, _ = draw_run_plots(out, model=model,
                                    val_data=_val_pair(splits))
    except PlotsUnavailableError as err:
        if not quiet:
            print(f"note: {err}")
        return
    if not quiet and written:
        print("plots: " + ", ".join(str(path) for path in written))


# --- evaluate ------------------------------------------------------------------------------------
