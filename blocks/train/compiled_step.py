"""`train.compile: true`: the whole training step as one compiled graph.

Compiling only the forward leaves the backward, the optimizer update and the guard as separate
calls, each paying its own dispatch and AOTAutograd's runtime wrappers: on small models that
made compiled training slower than eager. Here one function does the whole step, and
`torch.compile(fullgraph=True)` turns it into one graph:

- `torch.func.grad_and_value` of the trainer's loss through `torch.func.functional_call` (the
  same mean-loss weighting as `Trainer._micro_loss`, the same `HeadLoss` terms);
- the optimizer's update written out with torch.optim's own math (SGD with momentum, Nesterov
  and weight decay; Adam; AdamW) and `clip_grad_norm`'s;
- the non-finite guard: the loss folds into `NonFiniteGuard`'s sticky flag on the device and
  `torch.where` keeps every parameter and state tensor as it was, as the fused eager optimizers
  do with `found_inf`. No host sync per step.

It updates the real tensors in place: the parameters, the batchnorm buffers and the torch
optimizer's own state (`momentum_buffer`, `exp_avg`, `exp_avg_sq`, `step`), so checkpoints,
resume and saved runs are those of eager training and load into an uncompiled model. The
optimizer's numbers (learning rate, momentum or betas, ...) are tensor arguments: a schedule
changes their values, not the graph. Dropout draws from eager torch's random stream
(`fallback_random`), so the loss curve matches eager training to float tolerance. Each batch
size compiles its own graph once (`dynamic=False`: static shapes run fastest), so a smaller
last batch costs one more compile.

A configuration it does not cover (`unsupported` says which) keeps the compiled forward
(`CompiledForward`) instead, and the trainer says so once.
"""

from __future__ import annotations

import contextlib
import time
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch.func import functional_call, grad_and_value

from blocks.core.errors import BlocksError
from blocks.spec.model import SINGLE_HEAD
from blocks.train.compiled import _error

if TYPE_CHECKING:
    from blocks.train.metrics import HeadMetrics
    from blocks.train.nonfinite import NonFiniteGuard
    from blocks.train.trainer import Trainer

# the update rules written out below, by torch.optim class (AdamW before Adam: a subclass)
_RULES = ((torch.optim.AdamW, "adamw"), (torch.optim.Adam, "adam"), (torch.optim.SGD, "sgd"))


class NotTraceable(Exception):  # noqa: N818 - a signal to fall back, not an error users see
    """The step could not be traced as one graph (the model does something dynamo cannot
    capture); nothing ran, so the trainer can fall back to the compiled forward."""


def unsupported(trainer: Trainer) -> str | None:
    """Why the whole step cannot be compiled for this trainer, or None when it can."""
    spec, optimizer = trainer.spec, trainer.optimizer
    if spec.accumulate > 1:
        return f"gradient accumulation (accumulate: {spec.accumulate}) is not compiled as one step"
    if spec.freeze:
        return "frozen parameters (freeze) are not compiled as one step"
    rule = _rule(optimizer)
    if rule is None:
        return f"the optimizer {type(optimizer).__name__} has no compiled update"
    for group in optimizer.param_groups:
        if group.get("maximize") or group.get("amsgrad") or group.get("dampening", 0) \
                or group.get("differentiable") or group.get("capturable"):
            return "optimizer options maximize/amsgrad/dampening/capturable have no compiled update"
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    named = list(trainer.model.named_parameters())
    if any(id(p) not in trained for _, p in named) or len(trained) != len(named):
        return "some parameters are not trained by the optimizer"
    if any(not p.dtype.is_floating_point or p.device != trainer.device for _, p in named):
        return "parameters of a non-float dtype or on another device"
    return None


def _rule(optimizer: torch.optim.Optimizer) -> str | None:
    return next((name for cls, name in _RULES if type(optimizer) is cls), None)


class CompiledStep:
    """One optimizer step (a window of one micro-batch) as one compiled call; `compile_seconds`
    is the first call's time (where the compiling happens)."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer  # its spec's clip_grad_norm and precision are read while tracing
        self.model, self.optimizer = trainer.model, trainer.optimizer
        self.losses, self.heads = trainer.losses, trainer.heads
        self.device = trainer.device
        self.rule = _rule(self.optimizer)
        self.compile_seconds: float | None = None
        self._names = {p: name for name, p in self.model.named_parameters()}
        # where each buffer lives: the module's own dict, read per step (module.to() replaces
        # buffer tensors in it), without walking the module tree every step
        self._buffer_slots = [(f"{prefix}.{key}" if prefix else key, module._buffers, key)
                              for prefix, module in self.model.named_modules()
                              for key in module._buffers if module._buffers[key] is not None]
        self._loss_weights = {name: head.loss_weight for name, head in self.heads.items()}
        # the groups' numbers (lr, momentum or betas, eps, weight decay) live in tensors, so a
        # schedule (one_cycle moves momentum too) changes values, not the graph; MPS has no float64
        self._scalar = torch.float32 if self.device.type == "mps" else torch.float64
        self._hyper: list[list[torch.Tensor]] = []
        self._hyper_values: list[tuple[float, ...]] = []
        # fallback_random: dropout draws eager torch's masks from the same seed. No layout
        # optimisation: channels-last copies around each convolution cost more than they save
        # here. On a CPU the step's call sequence is C++ (cpp_wrapper): for small models the
        # Python wrapper's per-call work is a large share of a step (~15% faster, compiles longer)
        options = {"fallback_random": True, "layout_optimization": False,
                   "cpp_wrapper": self.device.type == "cpu"}
        try:
            self._compiled = torch.compile(_own_copy(self._step), fullgraph=True, dynamic=False,
                                           options=options)
        except Exception as err:  # noqa: BLE001 - any failure to set up compiling: say so
            raise _error(err) from err

    # --- the host side: arguments in, metrics and guard bookkeeping out --------------------------
    def __call__(self, x: torch.Tensor, y: dict[str, torch.Tensor],
                 metrics: dict[str, HeadMetrics], guard: NonFiniteGuard) -> None:
        """Run one step; queue its metrics and its loss for the guard (no host sync)."""
        groups = self.optimizer.param_groups
        fresh = not self.optimizer.state  # state made below is dropped again if the step fails
        # detached aliases of the parameters: updated in place inside the graph, as plain inputs
        # (a Parameter input that requires grad would get its update copied in a second pass)
        params = {self._names[p]: p.detach() for group in groups for p in group["params"]}
        buffers = {name: slot[key] for name, slot, key in self._buffer_slots}
        states = [self._state(p, group) for group in groups for p in group["params"]]
        start = time.perf_counter() if self.compile_seconds is None else None
        try:
            # no input requires grad (the parameters go in as detached aliases): no autograd
            # graph around the call; torch.func.grad differentiates inside it
            # per group its size and Nesterov flag: plain values the graph is specialised on
            layout = [(len(group["params"]), bool(group.get("nesterov"))) for group in groups]
            loss, outputs, values, norms = self._compiled(
                params, buffers, states, self._hyper_tensors(groups), layout, x, y, guard.poison,
                guard.found_inf)
        except Exception as err:  # noqa: BLE001 - dynamo/inductor raise many types; sort them
            if fresh:  # as before the call: no optimizer state (a fallback step makes its own)
                self.optimizer.state.clear()
            if isinstance(err, BlocksError):
                raise
            if _not_traceable(err):
                raise NotTraceable(_reason(err)) from err
            raise _error(err) from err
        if start is not None:
            self.compile_seconds = time.perf_counter() - start
        self.optimizer._opt_called = True  # lr schedulers check that the optimizer stepped
        guard.record(loss)
        for name, value in values.items():
            if name in norms:  # class weights: the sum and its normaliser, a tensor
                metrics[name].update(outputs[name], y[name], value, norms[name])
            else:  # the mean: its normaliser is the batch's size, known on the host
                metrics[name].update(outputs[name], y[name], value, self.losses[name].norm(y[name]),
                                     mean=True)

    def _state(self, p: torch.Tensor, group: dict[str, Any]) -> list[torch.Tensor]:
        """The torch optimizer's own state tensors for `p`, created as torch would (zeros give
        the same first step: SGD's buffer becomes the gradient, Adam's averages start at 0)."""
        state = self.optimizer.state[p]
        if self.rule == "sgd":
            if not group["momentum"]:
                return []
            if state.get("momentum_buffer") is None:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            return [state["momentum_buffer"]]
        if "step" not in state:
            on = p.device if group.get("fused") else torch.device("cpu")
            state["step"] = torch.zeros((), dtype=torch.float32, device=on)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return [state["step"], state["exp_avg"], state["exp_avg_sq"]]

    def _hyper_tensors(self, groups: list[dict[str, Any]]) -> list[list[torch.Tensor]]:
        """Per group its numbers as 0-dim tensors, refilled (a device fill, no sync) when the
        group's values changed since the last step."""
        for i, group in enumerate(groups):
            values = _numbers(group, self.rule)
            if i == len(self._hyper):
                # shape [1], not 0-dim: dynamo reads 0-dim float64 CPU tensors as Python numbers
                # and would check their values (a host read) on every call
                self._hyper.append([torch.zeros(1, dtype=self._scalar, device=self.device)
                                    for _ in values])
                self._hyper_values.append(())
            if values != self._hyper_values[i]:
                for tensor, value in zip(self._hyper[i], values, strict=True):
                    tensor.fill_(value)
                self._hyper_values[i] = values
        return self._hyper

    # --- the compiled side ---------------------------------------------------------------------
    def _loss(self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
              x: torch.Tensor, y: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Any]:
        """`Trainer._micro_loss` for a window of one micro-batch: per head the mean (or, with
        class weights, sum / total weight), times the head's loss weight, summed over heads."""
        bf16 = self.trainer.spec.precision == "bf16"
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if bf16 \
            else contextlib.nullcontext()
        with autocast:
            out = functional_call(self.model, (params, buffers), (x,))
        outputs = out if isinstance(out, dict) else {SINGLE_HEAD: out}
        loss: torch.Tensor | None = None
        values: dict[str, torch.Tensor] = {}  # per head, what the metrics take: the mean, or
        norms: dict[str, torch.Tensor] = {}  # with class weights the sum and its normaliser
        for name, head_loss in self.losses.items():
            logits, target = outputs[name], y[name]
            norm = head_loss.norm(target)
            if isinstance(norm, int):
                term = head_loss.total(logits, target, reduction="mean")
                values[name] = term.detach()
            else:  # all samples weighted 0 (class_weights): norm 0 and sum 0, the term is 0
                total = head_loss.total(logits, target)
                term = total / norm.clamp_min(1e-12)
                values[name], norms[name] = total.detach(), norm.detach()
            weight = self._loss_weights[name]
            if weight != 1.0:
                term = term * weight
            loss = term if loss is None else loss + term
        return loss, ({k: v.detach() for k, v in outputs.items()}, values, norms)

    def _step(self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
              states: list[list[torch.Tensor]], hyper: list[list[torch.Tensor]],
              layout: list[tuple[int, bool]], x: torch.Tensor, y: dict[str, torch.Tensor],
              poison: torch.Tensor, found_inf: torch.Tensor) -> Any:
        grads, (loss, (outputs, values, norms)) = grad_and_value(self._loss, has_aux=True)(params, buffers, x, y)
        loss = loss.detach()
        # the guard's sticky flag, set by this loss or an earlier one (isfinite, not eager's
        # `0 * loss`: the compiler may fold a multiply by zero away)
        keep = torch.isfinite(loss) & (found_inf == 0)
        found_inf.copy_((~keep).to(found_inf.dtype))
        poison.copy_(torch.where(keep, poison, torch.full_like(poison, float("nan"))))
        grad_list = list(grads.values())
        clip = self.trainer.spec.clip_grad_norm
        if clip is not None:  # nn.utils.clip_grad_norm_'s arithmetic
            total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grad_list]))
            coef = torch.clamp(clip / (total + 1e-6), max=1.0)
            grad_list = [g * coef for g in grad_list]
        update = _UPDATES[self.rule]
        tensors = list(zip(params.values(), grad_list, states, strict=True))
        start = 0
        for (size, nesterov), group in zip(layout, hyper, strict=True):
            numbers = [n.reshape(()) for n in group]
            for p, g, state in tensors[start:start + size]:
                update(p, g, state, numbers, keep, nesterov=nesterov)
            start += size
        return loss, outputs, values, norms


def _own_copy(method: Callable[..., Any]) -> Callable[..., Any]:
    """`method` bound to its instance again, through a copy of its code object. Dynamo keeps
    compiled graphs, and its limit of 8 per function, per code object: without a copy every
    trainer in the process would share (and soon exhaust) one, then run the step eagerly."""
    func = method.__func__
    copy = types.FunctionType(func.__code__.replace(), func.__globals__, func.__name__,
                              func.__defaults__, func.__closure__)
    return types.MethodType(copy, method.__self__)


def _numbers(group: dict[str, Any], rule: str | None) -> tuple[float, ...]:
    """The group's numbers an update reads, in the order `_sgd` / `_adam` take them."""
    if rule == "sgd":
        return group["lr"], group["momentum"], group["weight_decay"]
    beta1, beta2 = group["betas"]
    return group["lr"], beta1, beta2, group["eps"], group["weight_decay"]


def _sgd(p: torch.Tensor, grad: torch.Tensor, state: list[torch.Tensor], numbers: list[torch.Tensor],
         keep: torch.Tensor, *, nesterov: bool) -> None:
    """torch.optim.SGD (dampening 0): weight decay into the gradient, momentum buffer,
    Nesterov look-ahead, then `p -= lr * d_p`. A weight decay of 0 adds exactly 0."""
    lr, momentum, weight_decay = (n.to(p.dtype) for n in numbers)
    grad = grad + weight_decay * p
    if state:  # a momentum buffer (none while momentum is 0, as in torch)
        (buf,) = state
        new_buf = buf * momentum + grad
        buf.copy_(torch.where(keep, new_buf, buf))
        grad = grad + momentum * new_buf if nesterov else new_buf
    p.copy_(torch.where(keep, p - lr * grad, p))


def _adam(p: torch.Tensor, grad: torch.Tensor, state: list[torch.Tensor], numbers: list[torch.Tensor],
          keep: torch.Tensor, *, nesterov: bool = False, decoupled: bool = False) -> None:
    """torch.optim.Adam / AdamW (no amsgrad): bias-corrected averages, decay decoupled or not;
    the bias corrections in the numbers' precision (float64 but on MPS), as torch's fused kernel."""
    step, exp_avg, exp_avg_sq = state
    lr, beta1, beta2, eps, weight_decay = numbers
    new_step = step + 1
    if decoupled:
        value = p * (1 - lr * weight_decay).to(p.dtype)
    else:
        value = p
        grad = grad + weight_decay.to(p.dtype) * p
    new_avg = exp_avg.lerp(grad, (1 - beta1).to(p.dtype))
    new_sq = exp_avg_sq * beta2.to(p.dtype) + (1 - beta2).to(p.dtype) * grad * grad
    count = new_step.to(lr.dtype)
    step_size = (lr / (1 - beta1 ** count)).to(p.dtype)
    correction2_sqrt = torch.sqrt(1 - beta2 ** count).to(p.dtype)
    denom = new_sq.sqrt() / correction2_sqrt + eps.to(p.dtype)
    step.copy_(torch.where(keep, new_step, step))
    exp_avg.copy_(torch.where(keep, new_avg, exp_avg))
    exp_avg_sq.copy_(torch.where(keep, new_sq, exp_avg_sq))
    p.copy_(torch.where(keep, value - step_size * new_avg / denom, p))


def _adamw(*args: Any, **kwargs: Any) -> None:
    _adam(*args, **kwargs, decoupled=True)


_UPDATES: dict[str, Callable[..., None]] = {"sgd": _sgd, "adam": _adam, "adamw": _adamw}


def _not_traceable(err: Exception) -> bool:
    """Dynamo could not capture the step as one graph (raised while tracing, before anything
    ran); a backend (inductor, the C++ toolchain) failing is a platform error instead."""
    exc = getattr(torch, "_dynamo", None) and torch._dynamo.exc
    if exc is None:
        return False
    if isinstance(err, exc.BackendCompilerFailed):
        return False
    return isinstance(err, exc.Unsupported | exc.TorchRuntimeError | exc.UserError)


def _reason(err: Exception) -> str:
    """Dynamo's own account of what it could not trace, on one line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for tag in ("Developer debug context:", "Explanation:"):
        found = next((line[len(tag):].strip() for line in lines if line.startswith(tag)), None)
        if found:
            return found[:200]
    return (lines or [type(err).__name__])[0][:200]

