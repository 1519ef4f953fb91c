"""`Trainer`: mini-batch training with exact mean-loss semantics.

Each optimizer step backpropagates the mean loss of its samples, once per micro-batch, scaled so
that `accumulate` micro-batches of any sizes give exactly the gradient of one batch holding all
of them. Epoch metrics weight every sample equally, the last, smaller batch included.

This module is the epoch loop and the optimizer step; around it, each in its own module of
`blocks.train`: `targets` (checked once, converted once), `early_stopping`, `resume` (the
trainer's state in a checkpoint) and `progress` (the bar and the epoch lines).
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from torch import nn

from blocks.builder.device import resolve_device
from blocks.builder.model import BlocksModel
from blocks.recipe.loading import validate_section
from blocks.spec.heads import SigmoidHead, SoftmaxHead
from blocks.spec.model import SINGLE_HEAD
from blocks.spec.train import TrainSpec
from blocks.train import compiled_step, loggers
from blocks.train import distributed as _dist
from blocks.train.batches import Batch, TensorBatches, batch_size_of, make_batches
from blocks.train.compiled import CompiledForward
from blocks.train.early_stopping import check_stopping_metric, track_best
from blocks.train.errors import TrainingError, TrainingWarning
from blocks.train.features import n_samples, on_device, to_device
from blocks.train.finetune import Freezing, load_initial_weights
from blocks.train.guards import lone_last_sample
from blocks.train.history import History
from blocks.train.inputs import as_tensor_pair
from blocks.train.losses import HeadLoss
from blocks.train.metrics import HeadMetrics
from blocks.train.nonfinite import NonFiniteGuard
from blocks.train.optim import make_optimizer, make_scheduler, rebuild_scheduler
from blocks.train.progress import epoch_bar, epoch_line, write_line
from blocks.train.resume import resume_trainer_state, save_trainer_state
from blocks.train.targets import check_batch, check_data, is_tensor_pair, prepared_targets

__all__ = ["CHECKPOINT", "Callback", "Trainer", "TrainingError", "TrainingWarning"]

Callback = Callable[["Trainer", dict[str, Any]], None]
CHECKPOINT = "checkpoint.safetensors"


class Trainer:
    """Train a `BlocksModel` with a `TrainSpec`; `fit` returns a `History`, `evaluate` a dict.

    With `run_dir`, each epoch rewrites history/metrics files and (every `checkpoint_every`
    epochs) an atomic checkpoint from which `fit(..., resume=True)` continues bit-identically.

    `distributed`: None (default) trains with DDP when a torch.distributed process group is
    active (e.g. under torchrun), True sets one up from the torchrun environment, False never.
    Distributed, `spec.batch_size` is the global batch size and losses, gradients and metrics
    are exactly those of a single process over the same batches (docs/distributed.md).
    """

    def __init__(self, model: BlocksModel, spec: TrainSpec | dict[str, Any] | None = None, *,
                 run_dir: str | Path | None = None, quiet: bool = False,
                 callbacks: Sequence[Callback] = (), distributed: bool | None = None) -> None:
        if not isinstance(model, BlocksModel):
            raise TypeError(f"Trainer trains models built by blocks.build, got {type(model).__name__}")
        if not isinstance(spec, TrainSpec):  # a dict: located, did-you-mean errors as in YAML

            spec = validate_section(TrainSpec, spec or {}, ("train",))
        self.spec = spec
        self.model = model
        if self.spec.device != "auto":
            target = resolve_device(self.spec.device)
            if target != model.device:
                model.to(target)
        self.device = model.check_device()
        # --- distributed hook: rank info (None when training alone), one device per rank ---
        self.dist = _dist.resolve(distributed)
        self.is_main = self.dist is None or self.dist.is_main
        if self.dist is not None and self.device.type == "cuda":
            local = _dist.local_device(cuda=True)
            if self.device != local:
                model.to(local)
                self.device = model.check_device()
        self.heads: dict[str, SoftmaxHead | SigmoidHead] = model.spec.head_specs
        self.losses = {name: HeadLoss(head, self.device) for name, head in self.heads.items()}
        # fine-tuning: frozen parameters stay out of the optimizer until unfreeze_at_epoch
        self.freezing = Freezing(self.spec, model) if self.spec.freeze or self.spec.param_groups else None
        self.optimizer = make_optimizer(self.spec, model)
        # train.compile (eager under DDP): the whole step where it can (compiled_step.py), else the
        # forward only; either way state dicts stay the model's
        self.compiled: CompiledForward | None = None
        self.compiled_step: compiled_step.CompiledStep | None = None
        if self.spec.compile and self.dist is None:
            self._compile(compiled_step.unsupported(self))
        self._ddp = _dist.wrap(model, self.device) if self.dist is not None else None
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        self.per_step_schedule = False
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.quiet = quiet
        self.callbacks = list(callbacks)
        self.history = History()
        self.epoch = 0  # epochs completed
        self.global_step = 0  # optimizer steps taken
        self.generator = torch.Generator().manual_seed(self.spec.seed)
        self.best: dict[str, Any] = {"value": None, "epoch": None, "wait": 0}
        self._best_state: dict[str, torch.Tensor] | None = None
        self._seeded = False
        self._steps_per_epoch: int | None = None
        self.stopped_early = False
        self._guard: NonFiniteGuard | None = None
        self._compile_shown = False  # train.compile's time, told once on an epoch line

    # --- public API ------------------------------------------------------------------------------
    def fit(self, train: Any, val: Any = None, *, resume: bool = False) -> History:
        """Train until `spec.epochs` epochs are done in total (continuing from the checkpoint in
        `run_dir` when `resume`). `epochs` counts the whole run, not each call: calling `fit`
        again on a finished trainer trains nothing; build a new `Trainer` to train again."""
        spec = self.spec
        train = as_tensor_pair(train, self.model, "training data")
        val = as_tensor_pair(val, self.model, "validation data")
        if is_tensor_pair(train):
            self.check_targets(*train, where="training data")
            train = self._prepared(*train)  # targets as the losses want them: once, not per batch
        if is_tensor_pair(val):
            self.check_targets(*val, where="validation data")
        drop_last = spec.drop_last or self._drop_lone_sample(train)
        batches = make_batches(train, spec.batch_size, shuffle=spec.shuffle, drop_last=drop_last,
                               generator=self.generator, pin_memory=self.device.type == "cuda",
                               device=self.device,
                               shard=self.dist.shard if self.dist is not None else None)
        if self.dist is not None:
            _dist.check_same_length(_length(batches), self.dist)
        try:
            steps_per_epoch = math.ceil(len(batches) / spec.accumulate)
        except TypeError:
            steps_per_epoch = 0
        self._steps_per_epoch = steps_per_epoch or None
        if spec.early_stopping is not None:
            check_stopping_metric(spec.early_stopping, self.heads, has_val=val is not None)
        if steps_per_epoch == 0 and spec.scheduler is not None:
            raise TrainingError("the learning-rate schedule needs data with a known length "
                                "(tensors, a sized Dataset or DataLoader)")
        if self.scheduler is None:
            self.scheduler, self.per_step_schedule = make_scheduler(spec, self.optimizer, steps_per_epoch)
        if resume:
            self.resume()
        elif not self._seeded:
            if spec.init_from is not None:  # once, as training starts (never on resume)
                load_initial_weights(self.model, spec.init_from)
            # dropout and other in-model randomness (a stream per rank when distributed)
            _seed_device_rngs(spec.seed + (self.dist.rank if self.dist is not None else 0), self.device)
        self._seeded = True
        start_wall = time.perf_counter()
        while self.epoch < spec.epochs and not self.stopped_early:
            began = time.perf_counter()
            record: dict[str, Any] = {"epoch": self.epoch + 1}
            if self.freezing is not None and self.freezing.due(self.epoch):
                self._unfreeze()
            if self.dist is not None and hasattr(getattr(batches, "sampler", None), "set_epoch"):
                batches.sampler.set_epoch(self.epoch)  # a user's DistributedSampler
            with self._collectives(f"epoch {self.epoch + 1}"):
                record |= self._train_epoch(batches)
                if val is not None:
                    record |= self.evaluate(val, split="val")
            record["lr"] = self.optimizer.param_groups[0]["lr"]
            record["time"] = round(time.perf_counter() - began, 4)
            if self.scheduler is not None and not self.per_step_schedule:
                self.scheduler.step()
            self.epoch += 1
            self.history.append(record)
            self._early_stopping(record)
            self._log(record)
            for callback in self.callbacks:
                callback(self, record)
            loggers.epoch_end(self, record)  # tensorboard / mlflow, when `train.loggers` names them
            if self.run_dir is not None:
                if self.is_main:
                    self.history.write(self.run_dir)
                if self.epoch % spec.checkpoint_every == 0 or self.epoch == spec.epochs or self.stopped_early:
                    with self._collectives("checkpointing"):
                        self.save_checkpoint()
        if self._best_state is not None and spec.early_stopping and spec.early_stopping.restore_best:
            self.model.load_state_dict(self._best_state)
        self.wall_time = time.perf_counter() - start_wall
        return self.history

    @torch.inference_mode()
    def evaluate(self, data: Any, *, split: str = "test") -> dict[str, float]:
        """Loss and accuracy per head on `data`, keys like `test/loss`, `test/<head>/accuracy`."""
        model = self.model
        data = as_tensor_pair(data, model, f"{split} data")
        checked = is_tensor_pair(data)
        if checked:  # checked once here: no per-batch check (a host sync each) below
            self.check_targets(*data, where=f"{split} data")
            data = self._prepared(*data)
        was_training = model.training
        model.eval()
        metrics = {name: HeadMetrics(name, head, self.device) for name, head in self.heads.items()}
        try:
            # its own generator: evaluating must not move the training data's shuffle stream
            batches = make_batches(data, self.spec.batch_size, shuffle=False, drop_last=False,
                                   generator=torch.Generator(),
                                   shard=self.dist.shard if self.dist is not None else None)
            for x, y in batches:
                if self.dist is not None and batch_size_of((x, y)) == 0:
                    continue  # this rank's share of a small last batch
                outputs, targets = self._forward(x, y, checked=checked)
                for name, loss in self.losses.items():
                    metrics[name].update(outputs[name], targets[name],
                                         loss.total(outputs[name], targets[name]), loss.norm(targets[name]))
        finally:
            self._train_mode(was_training)
        return self._reduce(metrics, split)

    # --- one epoch -------------------------------------------------------------------------------
    def _train_epoch(self, batches: Iterable[Batch]) -> dict[str, float]:
        model, spec = self.model, self.spec
        self._train_mode()
        metrics = {name: HeadMetrics(name, head, self.device) for name, head in self.heads.items()}
        bar = epoch_bar(_length(batches), self.epoch + 1, spec.epochs,
                        shown=not self.quiet and self.is_main)
        params = [p for p in model.parameters() if p.requires_grad]
        # checked, converted and placed once in `fit`: batches need no per-step preparation
        ready = (isinstance(batches, TensorBatches) and isinstance(batches.y, dict)
                 and on_device(batches.x, self.device)
                 and all(t.device == self.device for t in batches.y.values()))
        guard = self._device_guard()
        step_in_epoch = 0
        try:
            for step_in_epoch, window in enumerate(_windows(iter(batches), spec.accumulate), start=1):
                loss = self._step(window, metrics, params, ready=ready, guard=guard)
                if loss is not None and not math.isfinite(loss):  # a step that synced itself
                    raise self._non_finite(loss, step_in_epoch, self.global_step + 1)
                if guard is not None and guard.due:
                    last = guard.last_loss
                    self._check_guard(guard, step_in_epoch)
                    if not bar.disable:  # a sync, but once per interval and only on a terminal
                        bar.set_postfix(loss=f"{last.item():.4f}")
                bar.update(len(window))
            if guard is not None:
                self._check_guard(guard, step_in_epoch)
        finally:
            bar.close()
        return self._reduce(metrics, "train")

    def _device_guard(self) -> NonFiniteGuard | None:
        """The on-device non-finite guard when the optimizer is fused (and training is not
        distributed, where the step's all-reduced loss is read anyway); None: check per step."""
        if self.dist is not None or not (self.compiled_step is not None
                                          or NonFiniteGuard.supports(self.optimizer)):
            return None
        if self._guard is None or self._guard.optimizer is not self.optimizer:
            self._guard = NonFiniteGuard(self.optimizer, self.device)
        return self._guard

    def _check_guard(self, guard: NonFiniteGuard, step_in_epoch: int) -> None:
        """The guard's one host sync per interval; raise naming the first non-finite step.
        Its update and every later one were skipped on the device: undo their step count."""
        bad = guard.first_bad()
        if bad is None:
            return
        ago, value = bad
        self.global_step -= ago + 1
        if self.global_step == 0:  # no update ever happened: no optimizer state either (a skipped
            self.optimizer.state.clear()  # first step leaves SGD momentum buffers uninitialised)
        if self.scheduler is not None and self.per_step_schedule:
            # the schedule stepped on the skipped steps too: back to the last good step's lr
            self.scheduler.last_epoch = self.global_step
            self.scheduler = rebuild_scheduler(self.spec, self.optimizer, self.scheduler,
                                               self._steps_per_epoch or 0)
        raise self._non_finite(value, step_in_epoch - ago, self.global_step + 1)

    def _non_finite(self, loss: float, step_in_epoch: int, global_step: int) -> TrainingError:
        return TrainingError(
            f"the training loss became {loss} at epoch {self.epoch + 1}, step "
            f"{step_in_epoch} (global step {global_step}); the weights were not "
            "updated and the last checkpoint is untouched. Lower the learning rate, "
            "set clip_grad_norm, or check the data for NaN/inf")

    def _step(self, window: list[Batch], metrics: dict[str, HeadMetrics],
              params: list[nn.Parameter], *, ready: bool = False,
              guard: NonFiniteGuard | None = None) -> float | None:
        """One optimizer step over `window` micro-batches.

        With a `guard`, returns None without waiting for the device: a non-finite loss makes the
        fused optimizer skip this update (and every later one) on the device. Without, returns
        the window's loss, read on the host, and does not step on a non-finite one. Either way
        the weights stay as they were. `ready`: the batches hold checked targets on the device.
        """
        if ready:
            moved = window
        else:
            moved = [self._to_device(x, y) for x, y in window]
            for x, y in moved:
                self._check_batch(x, y)
        if self.compiled_step is not None:
            try:
                self.compiled_step(*moved[0], metrics, guard)
                self._count_step()
                return None
            except compiled_step.NotTraceable as err:  # nothing ran: the forward-only path
                self._compile(f"the step cannot be traced as one graph ({err})")
                guard = guard if NonFiniteGuard.supports(self.optimizer) else None
        norms = {name: sum(loss.norm(y[name]) for _, y in moved) for name, loss in self.losses.items()}
        if self.dist is not None:
            return self._dist_step(moved, norms, metrics, params)
        self.optimizer.zero_grad(set_to_none=True)
        window_loss: torch.Tensor | None = None
        for x, y in moved:
            loss = self._micro_loss(self._logits(x, self.compiled), y, norms, metrics)
            loss.backward()
            window_loss = loss.detach() if window_loss is None else window_loss + loss.detach()
        if guard is not None:
            guard.watch(window_loss)
            self._optimizer_step(params)
            return None
        value = window_loss.item()  # a host sync per step: never step on a NaN/inf loss
        if math.isfinite(value):
            self._optimizer_step(params)
        return value

    def _micro_loss(self, outputs: dict[str, torch.Tensor], y: dict[str, torch.Tensor],
                    norms: dict[str, Any], metrics: dict[str, HeadMetrics]) -> torch.Tensor:
        """sum_h loss_weight_h * (this micro-batch's loss sum_h) / (the window's normaliser_h).

        Summed over the window's micro-batches this is exactly the weighted batch-mean loss.
        """
        loss: torch.Tensor | None = None
        for name, head_loss in self.losses.items():
            norm = head_loss.norm(y[name])
            if isinstance(norm, int) and norm == norms[name]:
                # this micro-batch is the whole step: the mean in one kernel (the metrics form the
                # sum from it later, outside the autograd graph, in one op per epoch interval)
                term = head_loss.total(outputs[name], y[name], reduction="mean")
                metrics[name].update(outputs[name], y[name], term, norm, mean=True)
            else:
                total = head_loss.total(outputs[name], y[name])
                # a window whose samples all have class weight 0 has norm 0 and sum 0: term 0
                window_norm = norms[name]
                term = total / (window_norm.clamp_min(1e-12) if isinstance(window_norm, torch.Tensor)
                                else window_norm)
                metrics[name].update(outputs[name], y[name], total, norm)
            weight = self.heads[name].loss_weight
            if weight != 1.0:
                term = term * weight
            loss = term if loss is None else loss + term
        return loss

    def _optimizer_step(self, params: list[nn.Parameter]) -> None:
        if self.spec.clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(params, self.spec.clip_grad_norm)
        self.optimizer.step()
        self._count_step()

    def _count_step(self) -> None:
        self.global_step += 1
        if self.scheduler is not None and self.per_step_schedule:
            self.scheduler.step()

    def _compile(self, why_not: str | None) -> None:
        """`train.compile`: the whole step compiled as one graph, or where `why_not` says it
        cannot be, the forward only (said once, as a warning)."""
        if why_not is None:
            self.compiled_step = compiled_step.CompiledStep(self)
            return
        warnings.warn(f"train.compile: {why_not}; only the forward is compiled (slower than "
                      "compiling the whole step)", TrainingWarning, stacklevel=3)
        self.compiled_step, self.compiled = None, CompiledForward(self.model)

    # --- distributed hook (blocks.train.distributed) --------------------------------------------
    def _dist_step(self, moved: list[tuple[torch.Tensor, dict[str, torch.Tensor]]], norms: dict[str, Any],
                   metrics: dict[str, HeadMetrics], params: list[nn.Parameter]) -> float:
        """`_step` under DDP: each micro-batch is this rank's share of a global batch; its loss
        sum is divided by the global normaliser and DDP sums (not averages) the gradients, so the
        step's gradient is the global-batch mean. Every rank runs every backward, empty share or
        non-finite loss included, so no rank waits on a collective the others skip."""
        ddp = self._ddp
        norms = _dist.all_reduce_norms(norms, self.device)
        self.optimizer.zero_grad(set_to_none=True)
        window_loss = torch.zeros((), device=self.device)
        for i, (x, y) in enumerate(moved):
            sync = i == len(moved) - 1  # one gradient all-reduce per optimizer step
            with contextlib.nullcontext() if sync else ddp.no_sync():
                empty = batch_size_of((x, y)) == 0
                if empty:  # no batch-norm statistics or dropout draws from an empty share
                    self.model.eval()
                outputs = self._logits(x, ddp)
                if empty:
                    self._train_mode()
                loss = self._micro_loss(outputs, y, norms, metrics)
                if empty:
                    loss = loss + _dist.empty_share_loss(params)
                loss.backward()
            window_loss += loss.detach()
        value = _dist.all_reduce_sum(window_loss).item()
        if math.isfinite(value):  # every rank sees the same value and stops before stepping
            self._optimizer_step(params)
        return value

    # --- fine-tuning (blocks.train.finetune) ------------------------------------------------------
    def _train_mode(self, mode: bool = True) -> None:
        """`model.train(mode)`, with the batchnorm layers under frozen prefixes kept in eval."""
        self.model.train(mode)
        if mode and self.freezing is not None:
            self.freezing.keep_eval()

    def _unfreeze(self) -> None:
        """From `unfreeze_at_epoch` on: the frozen parameters join the optimizer, on the
        learning-rate schedule the others are on (DDP re-wrapped to see them)."""
        for group in self.freezing.unfreeze():
            self.optimizer.add_param_group(group)
        if self.scheduler is not None:
            self.scheduler = rebuild_scheduler(self.spec, self.optimizer, self.scheduler,
                                               self._steps_per_epoch or 0)
        if self._ddp is not None:
            self._ddp = _dist.wrap(self.model, self.device)

    def _collectives(self, where: str) -> contextlib.AbstractContextManager:
        if self.dist is None:
            return contextlib.nullcontext()
        return _dist.collective_errors(self.dist, where)

    def _forward(self, x: torch.Tensor, y: Any, *, checked: bool = False
                 ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        x, y = self._to_device(x, y)
        if not checked:
            self._check_batch(x, y)
        return self._logits(x), y

    def _logits(self, x: torch.Tensor, module: Callable[[torch.Tensor], Any] | None = None
                ) -> dict[str, torch.Tensor]:
        if self.spec.precision == "bf16":
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                out = (module or self.model)(x)
        else:
            out = (module or self.model)(x)
        return out if isinstance(out, dict) else {SINGLE_HEAD: out}

    def _to_device(self, x: torch.Tensor, y: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.model.multi_head_expected and not isinstance(y, dict):
            raise TrainingError(f"the model has heads {', '.join(self.heads)}: pass targets as "
                                "(X, {head: y})")
        x, targets = self._prepared(x, y)
        device, nb = self.device, self.device.type == "cuda"
        x = to_device(x, device, nb)
        return x, {name: values if values.device == device else values.to(device, non_blocking=nb)
                   for name, values in targets.items()}

    def _prepared(self, x: torch.Tensor, y: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return x, prepared_targets(y, self.heads)

    # --- checks ----------------------------------------------------------------------------------
    def _drop_lone_sample(self, train: Any) -> bool:
        """True when a last batch of one sample must be left out: batchnorm cannot train on it."""
        if self.dist is not None or not is_tensor_pair(train):
            return False
        try:
            why = lone_last_sample(self.model, n_samples(train[0]), self.spec.batch_size)
        except ValueError as err:
            raise TrainingError(str(err)) from None
        if why is not None:
            warnings.warn(why, TrainingWarning, stacklevel=3)
        return why is not None

    def check_targets(self, x: torch.Tensor, y: Any, *, where: str = "data") -> None:
        """Validate features and targets against the model's input and heads, naming the culprit."""
        check_data(self.model, self.heads, x, y, where=where)

    def _check_batch(self, x: torch.Tensor, y: dict[str, torch.Tensor]) -> None:
        """Batches from a Dataset or DataLoader (not checked up front): heads, range, shape."""
        check_batch(self.heads, y)

    # --- bookkeeping -----------------------------------------------------------------------------
    def _reduce(self, metrics: dict[str, HeadMetrics], split: str) -> dict[str, float]:
        if self.dist is not None:
            _dist.all_reduce_metrics(metrics)  # global sums and counts, not rank means
        if len(metrics) == 1 and SINGLE_HEAD in metrics:
            return metrics[SINGLE_HEAD].compute(f"{split}/")
        out = {f"{split}/loss": sum(self.heads[n].loss_weight * m.loss() for n, m in metrics.items())}
        for name, m in metrics.items():
            out |= m.compute(f"{split}/{name}/")
        return out

    def _early_stopping(self, record: dict[str, Any]) -> None:
        rule = self.spec.early_stopping
        if rule is None:
            return
        self.best, improved = track_best(rule, record, self.best)
        if improved:
            if rule.restore_best:
                self._best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        elif self.best["wait"] >= rule.patience:
            self.stopped_early = True

    def _log(self, record: dict[str, Any]) -> None:
        if self.quiet or not self.is_main:
            return
        note = "  (early stop)" if self.stopped_early else ""
        compiled = self.compiled_step or self.compiled
        if compiled is not None and compiled.compile_seconds is not None and not self._compile_shown:
            self._compile_shown = True  # the one slow epoch explained, once
            note += f"  (compiling took {compiled.compile_seconds:.1f}s of it, once per run)"
        write_line(epoch_line(record, self.spec.epochs, note))

    # --- checkpoints -----------------------------------------------------------------------------
    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        """Write everything `resume` needs to continue bit-identically (`blocks.train.resume`);
        by default to `run_dir/checkpoint.safetensors`."""
        return save_trainer_state(self, Path(path) if path is not None else self._checkpoint_path())

    def resume(self, path: str | Path | None = None) -> None:
        """Restore weights, optimizer, schedule, RNG streams, epoch and history from a checkpoint."""
        resume_trainer_state(self, Path(path) if path is not None else self._checkpoint_path())

    def _checkpoint_path(self) -> Path:
        if self.run_dir is None:
            raise TrainingError("checkpoints need a run folder: Trainer(..., run_dir=...)")
        return self.run_dir / CHECKPOINT


def _seed_device_rngs(seed: int, device: torch.device) -> None:
    """Seed the CPU generator and the training device's: what dropout draws from. Cheaper than
    `torch.manual_seed`, which also lazily seeds every other accelerator backend."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)
    elif device.type == "mps":
        torch.mps.manual_seed(seed)


def _windows(batches: Iterator[Batch], size: int) -> Iterator[list[Batch]]:
    if size == 1:
        for batch in batches:
            yield [batch]
        return
    while window := list(islice(batches, size)):
        yield window


def _length(batches: Any) -> int | None:
    try:
        return len(batches)
    except TypeError:
        return None
