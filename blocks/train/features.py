"""Features as the trainer carries them: one tensor, or a dict of tensors keyed by input name
(a multi-input model). Every batching step (shuffle, slice, shard, move) goes through these, so
a dict batches, shuffles, accumulates and resumes exactly like a tensor: one permutation drawn
from the same generator indexes every input."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

Features = torch.Tensor | dict[str, torch.Tensor]


def is_features(x: Any) -> bool:
    """A tensor, or a non-empty dict of tensors."""
    return isinstance(x, torch.Tensor) or (isinstance(x, Mapping) and bool(x) and all(
        isinstance(v, torch.Tensor) for v in x.values()))


def n_samples(x: Features) -> int:
    if isinstance(x, torch.Tensor):
        return len(x)
    sizes = {name: len(v) for name, v in x.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"inputs have different numbers of samples: {sizes}")
    return next(iter(sizes.values()))


def take(x: Features, index: Any) -> Features:
    """`x[index]` for a tensor, per input for a dict (same rows of every input)."""
    if isinstance(x, torch.Tensor):
        return x[index]
    return {name: v[index] for name, v in x.items()}


def device_of(x: Features) -> torch.device:
    return x.device if isinstance(x, torch.Tensor) else next(iter(x.values())).device


def to_device(x: Features, device: torch.device, non_blocking: bool = False) -> Features:
    if isinstance(x, torch.Tensor):
        return x if x.device == device else x.to(device, non_blocking=non_blocking)
    return {name: v if v.device == device else v.to(device, non_blocking=non_blocking)
            for name, v in x.items()}


def pinned(x: Features) -> Features:
    return x.pin_memory() if isinstance(x, torch.Tensor) else {k: v.pin_memory() for k, v in x.items()}


def nbytes(x: Features) -> int:
    return x.nbytes if isinstance(x, torch.Tensor) else sum(v.nbytes for v in x.values())


def on_device(x: Features, device: torch.device) -> bool:
    """Every tensor of `x` already on `device`."""
    values = [x] if isinstance(x, torch.Tensor) else list(x.values())
    return all(v.device == device for v in values)
