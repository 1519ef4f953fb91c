"""SHA-256 of a set of named tensors, stored in safetensors metadata and checked on load.

safetensors checks its header, not the tensor bytes: a flipped byte in the data loads silently.
The digest covers each tensor's name, dtype, shape and bytes, in name order.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from blocks.core.errors import BlocksError
from blocks.core.lazy import torch  # torch loads with the first digest, not with this module


class DamagedWeightsError(BlocksError):
    """Tensor data that no longer matches the checksum written with it."""


def digest(tensors: dict[str, torch.Tensor]) -> str:
    sha = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        sha.update(f"{name}|{tensor.dtype}|{list(tensor.shape)}|".encode())
        if tensor.numel():
            sha.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()


def verify_digest(tensors: dict[str, torch.Tensor], expected: str, path: str | Path) -> None:
    if digest(tensors) != expected:
        raise DamagedWeightsError(f"{path} is damaged: its tensor data does not match the "
                                  "checksum written with it (a changed or corrupted file); "
                                  "nothing was loaded")
