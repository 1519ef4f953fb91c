"""`blocks.lint.audit`: run a hand-written model once and report the pitfalls only runtime can see.

    report = blocks.lint.audit(model, torch.randn(2, 1, 28, 28), optimizer=opt)
    print(report)            # one line per finding, each naming the attribute path and the fix
    assert report.ok

One forward and one backward (`torch.autograd.grad`, so no `.grad` is touched) on a scalar
reduction of the output. Nothing is changed: training flags, buffers (BatchNorm statistics) and
the CPU/GPU random state are restored, no optimizer step is taken, and every hook or patch is
removed in `finally`. Imports only torch, the standard library, `blocks.core.errors` and
its own parts: `audit_report` (what is reported), `audit_state` (the checks before the run) and
`audit_run` (the watched forward and backward).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from blocks.lint.audit_report import AuditError, AuditFinding, AuditReport
from blocks.lint.audit_run import run_findings, run_once
from blocks.lint.audit_state import (
    check_devices,
    check_init_names,
    check_optimizer,
    check_plain_tensors,
    container_findings,
    model_device,
    module_paths,
    plain_container_modules,
)

__all__ = ["AuditError", "AuditFinding", "AuditReport", "audit"]


def audit(
    model: nn.Module, example_input: Any, optimizer: torch.optim.Optimizer | None = None
) -> AuditReport:
    """Run `model` once on `example_input` (a tensor, a tuple of positional inputs, or a dict of
    keyword inputs) and report unregistered, misplaced or untrained state. Changes nothing."""
    if not isinstance(model, nn.Module):
        raise AuditError(f"audit() expects an nn.Module, got {type(model).__name__}")
    report = AuditReport(model=type(model).__name__)
    device = model_device(model)
    names = module_paths(model)
    report.findings += check_devices(model, device, example_input)
    report.findings += check_plain_tensors(model, device)
    in_containers = plain_container_modules(model)
    report.findings += container_findings(in_containers)
    if optimizer is not None:
        report.findings += check_optimizer(model, optimizer)

    report.findings += check_init_names(model)
    run = run_once(model, example_input, names, device)
    report.findings += run_findings(model, run, in_containers)
    return report
