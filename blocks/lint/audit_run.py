"""The audit's run: one forward and one backward under watch, and what only they can show.

While `forward` runs, `nn.Module.__init__` is patched to record every module constructed (and
the user's source line that built it) and global hooks record every module called; the backward
(`torch.autograd.grad`, so no `.grad` is touched) shows which parameters get a gradient.
Training flags, buffers and the RNG state are restored and every patch and hook removed in
`finally`, whatever the forward does.
"""

from __future__ import annotations

import contextlib
import linecache
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from blocks.lint.audit_report import AuditFinding
from blocks.lint.audit_state import join_path, parameter_count, tensors_in

_TORCH_DIR = os.path.dirname(torch.__file__)
_THIS_FILE = os.path.abspath(__file__)  # `_caller` skips the patched __init__'s frames here


@dataclass
class _Created:
    """A module constructed while forward ran, and where."""

    module: nn.Module
    owner: str | None  # path of the module whose forward was running, None if unknown
    where: str  # "file.py:12"
    code_line: str
    variable: str | None


@dataclass
class ForwardRun:
    """What the watched forward and backward saw."""

    created: list[_Created] = field(default_factory=list)
    ran: dict[int, nn.Module] = field(default_factory=dict)
    grads: dict[str, bool] = field(default_factory=dict)  # trainable param name -> got a grad
    output_requires_grad: bool = False
    error: BaseException | None = None


def run_findings(model: nn.Module, run: ForwardRun,
                 in_containers: dict[str, list[nn.Module]]) -> list[AuditFinding]:
    """What the run showed: modules created during forward or called from outside the model,
    a failed forward, and parameters the output does not train. `in_containers` are the modules
    already reported as held in plain containers."""
    findings: list[AuditFinding] = []
    registered = {id(m) for m in model.modules()}
    findings += _created_findings(model, run, registered)
    created_ids = {id(c.module) for c in run.created}
    created_ids |= {id(sub) for c in run.created for sub in c.module.modules()}
    contained = {id(m) for mods in in_containers.values() for m in mods}
    for key, module in run.ran.items():
        if key in registered or key in created_ids or key in contained or not _matters(module):
            continue
        findings.append(
            AuditFinding(
                "unregistered_module",
                f"<{type(module).__name__} outside the model>",
                f"a {type(module).__name__} ran during forward but is not a sub-module of "
                f"{type(model).__name__} (a global or a module held by another object), so its "
                f"{parameter_count(module)} parameters are not in model.parameters()",
                "assign it as an attribute of the model (self.name = ...) in __init__",
                rule="BLK001",
            )
        )
    if run.error is not None:
        findings.append(
            AuditFinding(
                "forward_failed",
                "",
                f"forward raised {type(run.error).__name__}: {run.error}".rstrip(),
                "check the example input's shape and dtype against the first layer; if other "
                "findings name a device or a missing layer, fix those first",
            )
        )
        return findings
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    if not trainable and any(parameter_count(c.module) for c in run.created):
        findings.append(
            AuditFinding(
                "no_parameters",
                "",
                f"{type(model).__name__} has no trainable parameters: an optimizer built from "
                "model.parameters() has nothing to train, and the loss will not go down",
                "create the layers in __init__ (see created_in_forward above)",
                rule="BLK001",
            )
        )
    if trainable and not run.output_requires_grad:
        findings.append(
            AuditFinding(
                "output_has_no_grad",
                "",
                "the output does not depend on any trainable parameter (torch.no_grad(), "
                ".detach() or .item() inside forward?)",
                "return tensors computed from the parameters, without detaching them",
            )
        )
    elif trainable:
        for name, got in run.grads.items():
            if not got:
                findings.append(
                    AuditFinding(
                        "no_gradient",
                        name,
                        "this trainable parameter got no gradient from the output, so it is "
                        "never updated (unused in forward, or detached)",
                        "use it in forward, or set requires_grad=False / delete it if it is "
                        "unused on purpose",
                    )
                )
    return findings


def _matters(module: nn.Module) -> bool:
    """Has state (parameters, buffers) or train/eval behaviour: a stray nn.ReLU() is harmless."""
    stochastic = (nn.modules.dropout._DropoutNd, nn.RReLU)
    return isinstance(module, stochastic) or any(True for _ in module.parameters()) or any(
        True for _ in module.buffers()
    )


def _caller() -> tuple[str, str, str | None]:
    """("file:line", source line, assigned variable) of the user code creating a module."""
    frame = sys._getframe(2)
    while frame is not None:
        filename = os.path.abspath(frame.f_code.co_filename)
        if not filename.startswith(_TORCH_DIR) and filename != _THIS_FILE:
            text = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
            match = re.match(r"(?:self\.)?([A-Za-z_]\w*)\s*(?::[^=]+)?=[^=]", text)
            where = f"{frame.f_code.co_filename}:{frame.f_lineno}"
            return where, text, match.group(1) if match else None
        frame = frame.f_back  # type: ignore[assignment]
    return "<unknown>", "", None


@contextlib.contextmanager
def _watch(run: ForwardRun, names: dict[int, str]) -> Iterator[None]:
    """Record modules constructed and modules called while the body runs; undo all in finally."""
    original_init = nn.Module.__init__
    running: list[nn.Module] = []

    def tracking_init(self: nn.Module, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        where, text, var = _caller()
        owner = names.get(id(running[-1])) if running else None
        run.created.append(_Created(self, owner, where, text, var))

    def pre_hook(module: nn.Module, args: Any) -> None:
        running.append(module)

    def post_hook(module: nn.Module, args: Any, output: Any) -> None:
        run.ran[id(module)] = module
        if running and running[-1] is module:
            running.pop()

    global_hooks = torch.nn.modules.module
    handles = []
    try:
        nn.Module.__init__ = tracking_init  # type: ignore[method-assign]
        handles.append(global_hooks.register_module_forward_pre_hook(pre_hook))
        handles.append(global_hooks.register_module_forward_hook(post_hook))
        yield
    finally:
        nn.Module.__init__ = original_init  # type: ignore[method-assign]
        for handle in handles:
            handle.remove()


def _scalar(output: Any) -> torch.Tensor | None:
    """A scalar that depends on every floating tensor of the output that requires grad."""
    parts = [
        t.float().sum()
        for t in tensors_in(output)
        if t.requires_grad and (t.is_floating_point() or t.is_complex())
    ]
    return torch.stack([p.real if p.is_complex() else p for p in parts]).sum() if parts else None


def _call(model: nn.Module, example_input: Any) -> Any:
    if isinstance(example_input, dict):
        return model(**example_input)
    if isinstance(example_input, (tuple, list)):
        return model(*example_input)
    return model(example_input)


def run_once(
    model: nn.Module, example_input: Any, names: dict[int, str], device: torch.device | None
) -> ForwardRun:
    """`model` in train mode on `example_input`, then the gradient of a scalar of its output;
    `names`: module paths for the owners of created modules. Leaves the model as it was."""
    run = ForwardRun()
    modes = [(m, m.training) for m in model.modules()]
    buffers = [
        (module, name, buf, buf.detach().clone())
        for module in model.modules()
        for name, buf in module._buffers.items()
        if buf is not None
    ]
    rng_devices = [device] if device is not None and device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=rng_devices), _watch(run, names):
            model.train()
            try:
                output = _call(model, example_input)
            except Exception as err:  # reported as a finding, with what was found before it
                run.error = err
                return run
        trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        loss = _scalar(output)
        run.output_requires_grad = loss is not None
        if loss is not None and trainable:
            grads = torch.autograd.grad(
                loss, [p for _, p in trainable], allow_unused=True, retain_graph=False
            )
            run.grads = {n: g is not None for (n, _), g in zip(trainable, grads, strict=True)}
    finally:
        for module, training in modes:
            module.training = training
        with torch.no_grad():
            for module, name, buf, saved in buffers:
                module._buffers[name] = buf
                buf.copy_(saved)
    return run


def _created_findings(model: nn.Module, run: ForwardRun, registered: set[int]
                      ) -> list[AuditFinding]:
    """One finding per outermost module constructed during forward."""
    nested: set[int] = set()
    for c in run.created:
        nested |= {id(sub) for sub in c.module.modules() if sub is not c.module}
    paths = {id(m): n for n, m in model.named_modules()}
    out = []
    seen: set[int] = set()
    for c in run.created:
        key = id(c.module)
        if key in nested or key in seen or not _matters(c.module):
            continue
        seen.add(key)
        kind = type(c.module).__name__
        params = parameter_count(c.module)
        owner = c.owner if c.owner is not None else ""
        where = f"{c.where} (`{c.code_line}`)" if c.code_line else c.where
        if key in registered:
            path = paths.get(key, "")
            message = (
                f"{kind} created during forward at {where} and registered only then: an "
                "optimizer built before the first forward never sees its "
                f"{params} parameters"
            )
        else:
            path = join_path(owner, c.variable or kind.lower())
            message = (
                f"{kind} created during forward at {where}: it is re-created with fresh weights "
                f"on every call and its {params} parameters are not in model.parameters()"
            )
        out.append(
            AuditFinding(
                "created_in_forward",
                path,
                message,
                f"create it once in __init__ (self.{path.rsplit('.', 1)[-1]} = {kind}(...)) and "
                "only call it in forward",
                rule="BLK001",
            )
        )
    return out
