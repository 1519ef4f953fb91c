"""A trainer's whole state in a checkpoint, and a run resumed from it bit-identically.

Beyond the weights a checkpoint holds what makes the continuation exact: the optimizer and
schedule state, every RNG stream (CPU, CUDA, the data shuffle; every rank's when distributed),
the epoch and step counters, history, early-stopping progress and whether fine-tuning had
unfrozen its layers. Resuming refuses, with the reason, a checkpoint whose optimizer or
per-step schedule does not fit this run. The file format itself is `blocks.train.checkpoint`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from blocks.train import distributed as _dist
from blocks.train.checkpoint import load_checkpoint, save_checkpoint
from blocks.train.errors import TrainingError
from blocks.train.history import History

if TYPE_CHECKING:
    from blocks.train.trainer import Trainer


def save_trainer_state(trainer: Trainer, path: Path) -> Path:
    """Write `trainer`'s state to `path` (a collective when distributed: every rank calls it,
    rank 0 writes)."""
    states: dict[str, Any] = {
        "optimizer": trainer.optimizer.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "data": trainer.generator.get_state()},
    }
    if trainer.scheduler is not None:
        states["scheduler"] = trainer.scheduler.state_dict()
    if torch.cuda.is_available():
        states["rng"]["cuda"] = torch.cuda.get_rng_state_all()
    if trainer.dist is not None:  # every rank's RNG (a collective); rank 0 writes
        states["rng"] |= _dist.gather_rng_states(cuda=trainer.device.type == "cuda")
        if not trainer.is_main:
            return path
    if trainer._best_state is not None:
        states["best_state"] = trainer._best_state
    meta = {"epoch": trainer.epoch, "global_step": trainer.global_step,
            "steps_per_epoch": trainer._steps_per_epoch, "history": trainer.history.to_list(),
            "best": trainer.best, "stopped_early": trainer.stopped_early,
            "unfrozen": trainer.freezing is not None and bool(trainer.freezing.names)
            and not trainer.freezing.frozen,
            "train": trainer.spec.model_dump(mode="json")}
    return save_checkpoint(path, model_state=trainer.model.state_dict(), states=states, meta=meta)


def resume_trainer_state(trainer: Trainer, path: Path) -> None:
    """Restore weights, optimizer, schedule, RNG streams, epoch and history from `path`."""
    model_state, states, meta = load_checkpoint(path)
    planned = meta.get("train", {}).get("epochs")
    if trainer.per_step_schedule and planned is not None and planned != trainer.spec.epochs:
        raise TrainingError(
            f"{path} was trained with a per-step {trainer.spec.scheduler.type} schedule laid out "
            f"for {planned} epochs; resuming with epochs: {trainer.spec.epochs} would change (or "
            f"run past) it. Resume with epochs: {planned}, or start a new run")
    saved_optimizer = meta.get("train", {}).get("optimizer", {}).get("type")
    if saved_optimizer not in (None, trainer.spec.optimizer.type):
        raise TrainingError(f"{path} was trained with optimizer {saved_optimizer!r}, this run "
                            f"uses {trainer.spec.optimizer.type!r}; its state cannot carry over. "
                            "Resume with the same optimizer, or start a new run")
    saved_steps = meta.get("steps_per_epoch")
    if trainer.per_step_schedule and saved_steps not in (None, trainer._steps_per_epoch):
        raise TrainingError(f"{path} has {saved_steps} optimizer steps per epoch, this run "
                            f"{trainer._steps_per_epoch} (batch_size, accumulate or the data "
                            "changed); its per-step schedule would not fit. Start a new run")
    if meta.get("unfrozen") and trainer.freezing is not None and trainer.freezing.frozen:
        trainer._unfreeze()  # the saved optimizer holds the unfrozen groups too
    try:
        trainer.model.load_state_dict(model_state)
        trainer.optimizer.load_state_dict(states["optimizer"])
        if trainer.scheduler is not None and "scheduler" in states:
            trainer.scheduler.load_state_dict(
                {k: v for k, v in states["scheduler"].items() if v is not None})
    except (RuntimeError, KeyError, ValueError) as err:
        first = str(err).strip().splitlines()[0][:300]
        raise TrainingError(f"{path} does not fit this model or optimizer (was the recipe "
                            f"changed?): {first}. Start a new run, or resume with the recipe "
                            "it was written with") from None
    torch.set_rng_state(states["rng"]["torch"])
    trainer.generator.set_state(states["rng"]["data"])
    if "cuda" in states["rng"] and torch.cuda.is_available() and trainer.dist is None:
        torch.cuda.set_rng_state_all(states["rng"]["cuda"])
    if trainer.dist is not None:
        _dist.restore_rng_states(states["rng"], trainer.dist, trainer.spec.seed, meta["global_step"])
    trainer._best_state = states.get("best_state")
    trainer.epoch, trainer.global_step = meta["epoch"], meta["global_step"]
    trainer.history = History(meta["history"])
    trainer.best, trainer.stopped_early = meta["best"], meta["stopped_early"]
    trainer._seeded = True
