"""One device per model: choose it, verify it, and explain a mismatch before any op runs."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from blocks.core.errors import DeviceMismatchError
from blocks.spec.train import parse_device_name

DevicePolicy = Literal["raise", "move"]
_CPU = torch.device("cpu")


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """`auto` picks cuda, then mps, then cpu; an explicit device must be available."""
    if name == "cpu":  # the default of every build: no parsing
        return _CPU
    if name is None or name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(parse_device_name(str(name)))
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceMismatchError(f"device {str(device)!r} was requested but CUDA is not "
                                      "available on this machine; use 'auto' or 'cpu'")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        elif device.index >= torch.cuda.device_count():
            raise DeviceMismatchError(f"device {str(device)!r} was requested but this machine has "
                                      f"{torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceMismatchError("device 'mps' was requested but MPS is not available; use 'auto' or 'cpu'")
    return device


def module_devices(module: nn.Module) -> dict[torch.device, list[str]]:
    """Every device holding a parameter or buffer of `module`, with the tensors' names."""
    found: dict[torch.device, list[str]] = {}
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        found.setdefault(tensor.device, []).append(name)
    return found


def _collect_devices(module: nn.Module, devices: set[torch.device]) -> None:
    """One walk over the tree (runs on every build, so no name bookkeeping)."""
    for tensor in module._parameters.values():
        if tensor is not None:
            devices.add(tensor.device)
    for tensor in module._buffers.values():
        if tensor is not None:
            devices.add(tensor.device)
    for child in module._modules.values():
        if child is not None:
            _collect_devices(child, devices)


def single_device(module: nn.Module, default: torch.device) -> torch.device:
    """The one device all of `module`'s tensors live on; a `DeviceMismatchError` naming them if not."""
    devices: set[torch.device] = set()
    _collect_devices(module, devices)
    if len(devices) <= 1:
        return devices.pop() if devices else default
    found = module_devices(module)
    if len(found) > 1:
        listing = "; ".join(f"{dev}: {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"
                            for dev, names in found.items())
        raise DeviceMismatchError(f"the model's tensors are on {len(found)} devices ({listing}); "
                                  "a blocks model lives on exactly one: move it with model.to(device)")
    return next(iter(found))


def mismatch_message(what: str, tensor_device: torch.device, model_name: str,
                     model_device: torch.device) -> str:
    return (f"{what} is on device {tensor_device} but model {model_name!r} is on {model_device}; "
            f"move it first ({what}.to({str(model_device)!r})) or build the model with "
            "on_device_mismatch='move'")
