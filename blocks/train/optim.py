"""Optimizers and learning-rate schedules from the `train:` spec."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from blocks.spec.train import SGD, Adam, AdamW, CosineLR, OneCycleLR, StepLR, TrainSpec
from blocks.train.finetune import group_lr, optimizer_groups

_FUSED_DEVICES = ("cpu", "cuda", "mps", "xpu")


def make_optimizer(spec: TrainSpec, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer the spec names, with torch's fused kernel where the parameters allow it:
    one kernel for the whole update instead of several per parameter (about a quarter faster
    per step on CPU for small models; the same update rule)."""
    opt = spec.optimizer
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    params = optimizer_groups(spec, named)  # one plain group unless `param_groups` splits them
    fused = bool(named) and all(
        p.device.type in _FUSED_DEVICES and p.dtype.is_floating_point for _, p in named)
    if isinstance(opt, SGD):
        cls, kwargs = torch.optim.SGD, {"momentum": opt.momentum, "nesterov": opt.nesterov}
    elif isinstance(opt, Adam):  # AdamW is an Adam subclass with decoupled weight decay
        cls = torch.optim.AdamW if isinstance(opt, AdamW) else torch.optim.Adam
        kwargs = {"betas": tuple(opt.betas), "eps": opt.eps}
    else:
        raise TypeError(f"unsupported optimizer spec {type(opt).__name__}")
    try:
        return cls(params, lr=opt.lr, weight_decay=opt.weight_decay, fused=fused or None, **kwargs)
    except (RuntimeError, ValueError):  # a device/dtype this torch build has no fused kernel for
        return cls(params, lr=opt.lr, weight_decay=opt.weight_decay, **kwargs)


def make_scheduler(spec: TrainSpec, optimizer: torch.optim.Optimizer, steps_per_epoch: int
                   ) -> tuple[torch.optim.lr_scheduler.LRScheduler | None, bool]:
    """The scheduler and whether it steps per optimizer step (True) or per epoch (False)."""
    sched = spec.scheduler
    total = max(1, spec.epochs * steps_per_epoch)
    if sched is None:
        return None, False
    if isinstance(sched, StepLR):
        return torch.optim.lr_scheduler.StepLR(optimizer, sched.step_size, sched.gamma), False
    if isinstance(sched, CosineLR):
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total, eta_min=sched.eta_min), True
    if isinstance(sched, OneCycleLR):
        max_lr = sched.max_lr or spec.optimizer.lr
        if spec.param_groups:  # each group peaks at its own lr, scaled like the default's
            max_lr = [max_lr * group_lr(spec, g) / spec.optimizer.lr for g in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=max_lr, total_steps=total, pct_start=sched.pct_start), True
    raise TypeError(f"unsupported scheduler spec {type(sched).__name__}")


def rebuild_scheduler(spec: TrainSpec, optimizer: torch.optim.Optimizer,
                      old: torch.optim.lr_scheduler.LRScheduler, steps_per_epoch: int
                      ) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The schedule again, after the optimizer gained param groups, at the step `old` was at:
    every group restarts from its initial lr and the steps taken are replayed, so new groups
    follow the same schedule the others are on (old groups land on their current lr)."""
    steps = old.last_epoch
    for group in optimizer.param_groups:
        group["lr"] = group.get("initial_lr", group["lr"])
    with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": a replay
        warnings.simplefilter("ignore", UserWarning)
        new, _ = make_scheduler(spec, optimizer, steps_per_epoch)
        for _ in range(steps):
            new.step()
    return new
