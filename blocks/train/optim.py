"""Optimizers and learning-rate schedules from the `train:` spec."""

from __future__ import annotations

import torch
from torch import nn

from blocks.train.spec import SGD, Adam, AdamW, CosineLR, OneCycleLR, StepLR, TrainSpec


def make_optimizer(spec: TrainSpec, model: nn.Module) -> torch.optim.Optimizer:
    opt = spec.optimizer
    params = [p for p in model.parameters() if p.requires_grad]
    if isinstance(opt, SGD):
        return torch.optim.SGD(params, lr=opt.lr, momentum=opt.momentum, nesterov=opt.nesterov,
                               weight_decay=opt.weight_decay)
    if isinstance(opt, Adam):  # AdamW is an Adam subclass with decoupled weight decay
        cls = torch.optim.AdamW if isinstance(opt, AdamW) else torch.optim.Adam
        return cls(params, lr=opt.lr, betas=tuple(opt.betas), eps=opt.eps,
                   weight_decay=opt.weight_decay)
    raise TypeError(f"unsupported optimizer spec {type(opt).__name__}")


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
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=sched.max_lr or spec.optimizer.lr, total_steps=total,
            pct_start=sched.pct_start), True
    raise TypeError(f"unsupported scheduler spec {type(sched).__name__}")
