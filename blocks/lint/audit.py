"""`blocks.lint.audit`: run a hand-written model once and report the pitfalls only runtime can see.

    report = blocks.lint.audit(model, torch.randn(2, 1, 28, 28), optimizer=opt)
    print(report)            # one line per finding, each naming the attribute path and the fix
    assert report.ok

One forward and one backward (`torch.autograd.grad`, so no `.grad` is touched) on a scalar
reduction of the output. Nothing is changed: training flags, buffers (BatchNorm statistics) and
the CPU/GPU random state are restored, no optimizer step is taken, and every hook or patch is
removed in `finally`. Imports only torch, the standard library and `blocks.core.errors`.
"""

from __future__ import annotations

import contextlib
import linecache
import os
import re
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from blocks.core.errors import BlocksError

_TORCH_DIR = os.path.dirname(torch.__file__)
_THIS_FILE = os.path.abspath(__file__)
_REGISTRIES = ("_modules", "_parameters", "_buffers")


class AuditError(BlocksError, ValueError):
    """The audit could not start (not a module, bad input): says what was expected."""


@dataclass(frozen=True)
class AuditFinding:
    """One runtime problem: a stable snake_case `code`, the attribute `path`, what and how to fix.

    `rule` names the matching static lint rule (docs/lint/BLK00N.md) when there is one.
    """

    code: str
    path: str
    message: str
    fix: str
    rule: str | None = None

    def __str__(self) -> str:
        return f"{self.code} {self.path or '<model>'}: {self.message}. Fix: {self.fix}"


@dataclass
class AuditReport:
    """Every finding of one audit; empty (and `ok`) for a model with none of the pitfalls."""

    model: str
    findings: list[AuditFinding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    def __iter__(self) -> Iterator[AuditFinding]:
        return iter(self.findings)

    def __len__(self) -> int:
        return len(self.findings)

    def __str__(self) -> str:
        if self.ok:
            return f"audit {self.model}: no problems found"
        n = len(self.findings)
        lines = [f"audit {self.model}: {n} problem{'s' if n != 1 else ''}"]
        lines += [f"  {f}" for f in self.findings]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "ok": self.ok, "findings": [asdict(f) for f in self.findings]}


@dataclass
class _Created:
    module: nn.Module
    owner: str | None  # path of the module whose forward was running, None if unknown
    where: str  # "file.py:12"
    code_line: str
    variable: str | None


@dataclass
class _Run:
    created: list[_Created] = field(default_factory=list)
    ran: dict[int, nn.Module] = field(default_factory=dict)
    grads: dict[str, bool] = field(default_factory=dict)  # trainable param name -> got a grad
    output_requires_grad: bool = False
    error: BaseException | None = None


def audit(
    model: nn.Module, example_input: Any, optimizer: torch.optim.Optimizer | None = None
) -> AuditReport:
    """Run `model` once on `example_input` (a tensor, a tuple of positional inputs, or a dict of
    keyword inputs) and report unregistered, misplaced or untrained state. Changes nothing."""
    if not isinstance(model, nn.Module):
        raise AuditError(f"audit() expects an nn.Module, got {type(model).__name__}")
    report = AuditReport(model=type(model).__name__)
    device = _model_device(model)
    names = _module_paths(model)
    report.findings += _check_devices(model, device, example_input)
    report.findings += _check_plain_tensors(model, device)
    in_containers = _plain_container_modules(model)
    report.findings += _container_findings(in_containers)
    if optimizer is not None:
        report.findings += _check_optimizer(model, optimizer)

    report.findings += _check_init_names(model)
    run = _run_once(model, example_input, names, device)
    registered = {id(m) for m in model.modules()}
    report.findings += _created_findings(model, run, registered)
    created_ids = {id(c.module) for c in run.created}
    created_ids |= {id(sub) for c in run.created for sub in c.module.modules()}
    contained = {id(m) for mods in in_containers.values() for m in mods}
    for key, module in run.ran.items():
        if key in registered or key in created_ids or key in contained or not _matters(module):
            continue
        report.findings.append(
            AuditFinding(
                "unregistered_module",
                f"<{type(module).__name__} outside the model>",
                f"a {type(module).__name__} ran during forward but is not a sub-module of "
                f"{type(model).__name__} (a global or a module held by another object), so its "
                f"{_count(module)} parameters are not in model.parameters()",
                "assign it as an attribute of the model (self.name = ...) in __init__",
                rule="BLK001",
            )
        )
    if run.error is not None:
        report.findings.append(
            AuditFinding(
                "forward_failed",
                "",
                f"forward raised {type(run.error).__name__}: {run.error}".rstrip(),
                "check the example input's shape and dtype against the first layer; if other "
                "findings name a device or a missing layer, fix those first",
            )
        )
        return report
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    if not trainable and any(_count(c.module) for c in run.created):
        report.findings.append(
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
        report.findings.append(
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
                report.findings.append(
                    AuditFinding(
                        "no_gradient",
                        name,
                        "this trainable parameter got no gradient from the output, so it is "
                        "never updated (unused in forward, or detached)",
                        "use it in forward, or set requires_grad=False / delete it if it is "
                        "unused on purpose",
                    )
                )
    return report


# -- checks before the run -------------------------------------------------------------------
def _model_device(model: nn.Module) -> torch.device | None:
    """The device most parameters and buffers live on (None for a model with neither)."""
    counts = Counter(t.device for t in [*model.parameters(), *model.buffers()])
    return counts.most_common(1)[0][0] if counts else None


def _module_paths(model: nn.Module) -> dict[int, str]:
    return {id(m): name for name, m in model.named_modules(remove_duplicate=False)}


def _tensors_in(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors_in(item)


def _check_devices(
    model: nn.Module, device: torch.device | None, example_input: Any
) -> list[AuditFinding]:
    if device is None:
        return []
    out = []
    for kind, items in (("parameter", model.named_parameters()), ("buffer", model.named_buffers())):
        for name, tensor in items:
            if tensor.device != device:
                out.append(
                    AuditFinding(
                        "wrong_device",
                        name,
                        f"{kind} on {tensor.device} while the rest of the model is on {device}",
                        f"create it in __init__ without a fixed device and move the whole model "
                        f"once: model.to({str(device)!r})",
                    )
                )
    for tensor in _tensors_in(example_input):
        if tensor.device != device:
            out.append(
                AuditFinding(
                    "input_device",
                    "<input>",
                    f"the example input is on {tensor.device} but the model is on {device}",
                    f"move inputs to the model's device: x = x.to({str(device)!r})",
                )
            )
            break
    return out


def _plain_attributes(model: nn.Module) -> Iterator[tuple[str, str, Any]]:
    """(module path, attribute, value) for every non-registry attribute of every sub-module."""
    for path, module in model.named_modules():
        for attr, value in vars(module).items():
            if attr not in _REGISTRIES:
                yield path, attr, value


def _join(path: str, attr: str) -> str:
    return f"{path}.{attr}" if path else attr


def _check_plain_tensors(model: nn.Module, device: torch.device | None) -> list[AuditFinding]:
    out = []
    for path, attr, value in _plain_attributes(model):
        if not isinstance(value, torch.Tensor) or isinstance(value, nn.Parameter):
            continue
        if value.requires_grad and value.is_leaf:
            out.append(
                AuditFinding(
                    "plain_tensor_attribute",
                    _join(path, attr),
                    "a tensor with requires_grad=True stored as a plain attribute: it is not in "
                    "parameters() (never trained) and .to(device) does not move it",
                    f"self.{attr} = nn.Parameter(tensor)",
                    rule="BLK005",
                )
            )
        elif device is not None and value.device != device:
            out.append(
                AuditFinding(
                    "wrong_device",
                    _join(path, attr),
                    f"plain tensor attribute on {value.device} while the model is on {device}: "
                    ".to(device) does not move plain attributes",
                    f"self.register_buffer({attr!r}, tensor) so it moves with the model",
                )
            )
    return out


def _plain_container_modules(model: nn.Module) -> dict[str, list[nn.Module]]:
    """Attribute path -> modules held in a plain list/tuple/set/dict there (unregistered)."""
    out: dict[str, list[nn.Module]] = {}
    for path, attr, value in _plain_attributes(model):
        if isinstance(value, dict):
            items = list(value.values())
        elif isinstance(value, (list, tuple, set, frozenset)):
            items = list(value)
        else:
            continue
        modules = [v for v in items if isinstance(v, nn.Module)]
        if modules:
            out[_join(path, attr)] = modules
    return out


def _container_findings(found: dict[str, list[nn.Module]]) -> list[AuditFinding]:
    out = []
    for path, modules in found.items():
        kinds = ", ".join(sorted({type(m).__name__ for m in modules}))
        params = sum(_count(m) for m in modules)
        out.append(
            AuditFinding(
                "plain_container",
                path,
                f"{len(modules)} module(s) ({kinds}, {params} parameters) held in a plain Python "
                "container: not registered, so parameters(), .to(device) and state_dict() miss "
                "them",
                "use nn.ModuleList([...]) for a list or nn.ModuleDict({...}) for a dict",
                rule="BLK004",
            )
        )
    return out


def _check_optimizer(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[AuditFinding]:
    in_opt = {id(p) for group in optimizer.param_groups for p in group["params"]}
    out = []
    for name, param in model.named_parameters():
        if param.requires_grad and id(param) not in in_opt:
            out.append(
                AuditFinding(
                    "not_in_optimizer",
                    name,
                    "trainable parameter missing from the optimizer: it gets gradients but is "
                    "never updated (optimizer built before this layer existed, or from a "
                    "sub-module only?)",
                    "build the optimizer after the model is complete: "
                    "torch.optim.X(model.parameters(), ...)",
                )
            )
    return out


def _near_init(name: str) -> bool:
    """`__int__`, `__init_`, `_init_`, `__inti__`: a misspelled `__init__` Python never calls."""
    if name == "__init__" or not name.startswith("_"):
        return False
    a, b = name, "__init__"
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1] <= 2


def _check_init_names(model: nn.Module) -> list[AuditFinding]:
    out = []
    for cls in type(model).__mro__:
        if cls is nn.Module or not issubclass(cls, nn.Module) or "__init__" in vars(cls):
            continue
        if cls.__module__.startswith("torch."):
            continue
        mangled = f"_{cls.__name__.lstrip('_')}__"
        for name, value in vars(cls).items():
            if name.startswith(mangled):  # `__init_` is stored name-mangled: `_Model__init_`
                name = name[len(mangled) - 2 :]
            if callable(value) and _near_init(name):
                out.append(
                    AuditFinding(
                        "misspelled_init",
                        "",
                        f"{cls.__name__} defines {name}() but no __init__: Python never calls "
                        f"{name}, so none of the layers it creates exist",
                        f"rename {name} to __init__",
                        rule="BLK002",
                    )
                )
    return out


# -- the run ---------------------------------------------------------------------------------
def _matters(module: nn.Module) -> bool:
    """Has state (parameters, buffers) or train/eval behaviour: a stray nn.ReLU() is harmless."""
    stochastic = (nn.modules.dropout._DropoutNd, nn.RReLU)
    return isinstance(module, stochastic) or any(True for _ in module.parameters()) or any(
        True for _ in module.buffers()
    )


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


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
def _watch(run: _Run, names: dict[int, str]) -> Iterator[None]:
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
        for t in _tensors_in(output)
        if t.requires_grad and (t.is_floating_point() or t.is_complex())
    ]
    return torch.stack([p.real if p.is_complex() else p for p in parts]).sum() if parts else None


def _call(model: nn.Module, example_input: Any) -> Any:
    if isinstance(example_input, dict):
        return model(**example_input)
    if isinstance(example_input, (tuple, list)):
        return model(*example_input)
    return model(example_input)


def _run_once(
    model: nn.Module, example_input: Any, names: dict[int, str], device: torch.device | None
) -> _Run:
    run = _Run()
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


def _created_findings(model: nn.Module, run: _Run, registered: set[int]) -> list[AuditFinding]:
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
        params = _count(c.module)
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
            path = _join(owner, c.variable or kind.lower())
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
