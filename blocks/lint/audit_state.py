"""The audit's checks before the run: what the model's state shows without calling it.

Parameters, buffers and plain tensor attributes on the wrong device; trainable tensors kept as
plain attributes; modules held in plain containers; trainable parameters missing from the
optimizer; a misspelled `__init__` in the class hierarchy. Reads the model, changes nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from blocks.lint.audit_report import AuditFinding

_REGISTRIES = ("_modules", "_parameters", "_buffers")


def model_device(model: nn.Module) -> torch.device | None:
    """The device most parameters and buffers live on (None for a model with neither)."""
    counts = Counter(t.device for t in [*model.parameters(), *model.buffers()])
    return counts.most_common(1)[0][0] if counts else None


def module_paths(model: nn.Module) -> dict[int, str]:
    """id(sub-module) -> its qualified name, shared modules under each of their names."""
    return {id(m): name for name, m in model.named_modules(remove_duplicate=False)}


def tensors_in(value: Any) -> Iterator[torch.Tensor]:
    """Every tensor in `value`, looking into lists, tuples and dict values."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from tensors_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from tensors_in(item)


def check_devices(
    model: nn.Module, device: torch.device | None, example_input: Any
) -> list[AuditFinding]:
    """Parameters, buffers and the example input on another device than most of the model."""
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
    for tensor in tensors_in(example_input):
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


def join_path(path: str, attr: str) -> str:
    """`path.attr`, or `attr` on the model itself."""
    return f"{path}.{attr}" if path else attr


def check_plain_tensors(model: nn.Module, device: torch.device | None) -> list[AuditFinding]:
    """Plain tensor attributes: trainable ones (not parameters), and ones on the wrong device."""
    out = []
    for path, attr, value in _plain_attributes(model):
        if not isinstance(value, torch.Tensor) or isinstance(value, nn.Parameter):
            continue
        if value.requires_grad and value.is_leaf:
            out.append(
                AuditFinding(
                    "plain_tensor_attribute",
                    join_path(path, attr),
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
                    join_path(path, attr),
                    f"plain tensor attribute on {value.device} while the model is on {device}: "
                    ".to(device) does not move plain attributes",
                    f"self.register_buffer({attr!r}, tensor) so it moves with the model",
                )
            )
    return out


def plain_container_modules(model: nn.Module) -> dict[str, list[nn.Module]]:
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
            out[join_path(path, attr)] = modules
    return out


def container_findings(found: dict[str, list[nn.Module]]) -> list[AuditFinding]:
    """One finding per plain container that holds modules."""
    out = []
    for path, modules in found.items():
        kinds = ", ".join(sorted({type(m).__name__ for m in modules}))
        params = sum(parameter_count(m) for m in modules)
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


def check_optimizer(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[AuditFinding]:
    """Trainable parameters the optimizer does not hold."""
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


def check_init_names(model: nn.Module) -> list[AuditFinding]:
    """Classes in the hierarchy with no `__init__` but a misspelled one."""
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



def parameter_count(module: nn.Module) -> int:
    """How many parameter elements `module` holds, its sub-modules included."""
    return sum(p.numel() for p in module.parameters())
