"""Checkpoints as one safetensors file: tensors (weights, optimizer state, RNG) plus JSON metadata.

One file means one atomic rename: a crash leaves the previous checkpoint whole. Nothing is
unpickled on load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from blocks.core.digest import digest, verify_digest
from blocks.core.errors import BlocksError
from blocks.core.files import atomic_write

FORMAT = "blocks-checkpoint/1"


class CorruptCheckpointError(BlocksError):
    """A checkpoint or weights file that is truncated, damaged or not ours."""


def unique_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies; tensors sharing storage (tied weights) are cloned apart."""
    seen: set[tuple[int, int]] = set()
    out = {}
    for name, tensor in state.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        tensor = tensor.detach().to("cpu").contiguous()
        if key in seen:
            tensor = tensor.clone()
        seen.add(key)
        out[name] = tensor
    return out


def _split_state(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace tensors inside a nested state dict by `{"__tensor__": key}` references."""
    if isinstance(obj, torch.Tensor):
        key = f"{prefix}"
        tensors[key] = obj.detach().to("cpu").contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {str(k): _split_state(v, f"{prefix}.{k}", tensors) for k, v in obj.items()} | (
            {"__int_keys__": True} if obj and all(isinstance(k, int) for k in obj) else {})
    if isinstance(obj, list | tuple):
        return [_split_state(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if callable(obj):
        return None  # e.g. scheduler lambdas: recreated by the constructor
    return obj


def _join_state(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        int_keys = obj.get("__int_keys__", False)
        return {(int(k) if int_keys else k): _join_state(v, tensors)
                for k, v in obj.items() if k != "__int_keys__"}
    if isinstance(obj, list):
        return [_join_state(v, tensors) for v in obj]
    return obj


def save_checkpoint(path: str | Path, *, model_state: dict[str, torch.Tensor],
                    states: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Write `model_state`, nested `states` (optimizer, scheduler, RNG...) and `meta` atomically."""
    tensors = {f"model.{k}": v for k, v in unique_tensors(model_state).items()}
    structure = {name: _split_state(state, name, tensors) for name, state in states.items()}
    metadata = {"format": FORMAT, "states": json.dumps(structure), "meta": json.dumps(meta),
                "sha256": digest(tensors)}
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """(model_state, states, meta) from `save_checkpoint`; `CorruptCheckpointError` if damaged."""
    path = Path(path)
    if not path.exists():
        raise CorruptCheckpointError(f"no checkpoint at {path}")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
        if metadata.get("format") != FORMAT:
            raise CorruptCheckpointError(f"{path} is not a blocks checkpoint (format "
                                         f"{metadata.get('format')!r})")
        structure = json.loads(metadata["states"])
        meta = json.loads(metadata["meta"])
        if not isinstance(structure, dict) or not isinstance(meta, dict):
            raise ValueError("its metadata is not a JSON object")
    except (SafetensorError, OSError, ValueError, KeyError, RecursionError) as err:
        raise CorruptCheckpointError(f"checkpoint {path} is corrupt or truncated ({err}); "
                                     "it was not loaded") from None
    if "sha256" in metadata:
        verify_digest(tensors, metadata["sha256"], path)
    try:
        states = {name: _join_state(value, tensors) for name, value in structure.items()}
    except (KeyError, TypeError, AttributeError, RecursionError) as err:
        raise CorruptCheckpointError(f"checkpoint {path} has damaged state metadata "
                                     f"({type(err).__name__}: {str(err)[:80]}); it was not loaded") from None
    problem = _meta_problem(meta, states)
    if problem:
        raise CorruptCheckpointError(f"checkpoint {path} is damaged or hand-edited: {problem}; it "
                                     "was not loaded")
    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    return model_state, states, meta


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _meta_problem(meta: dict[str, Any], states: dict[str, Any]) -> str | None:
    """What is wrong with a checkpoint's metadata (types and ranges), or None: a run folder is
    untrusted input, and a negative epoch or a string history must not be trained from."""
    for key in ("epoch", "global_step"):
        if not _is_count(meta.get(key)):
            return f"`{key}` must be a whole number >= 0, found {str(meta.get(key))[:40]!r}"
    history = meta.get("history")
    if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
        return "`history` must be a list of epoch records (objects)"
    if len(history) != meta["epoch"]:
        return f"`history` holds {len(history)} epochs but `epoch` says {meta['epoch']}"
    for i, record in enumerate(history):
        if record.get("epoch") != i + 1:
            return f"history record {i} is for epoch {str(record.get('epoch'))[:20]!r}, not {i + 1}"
    best = meta.get("best")
    if not isinstance(best, dict) or not {"value", "epoch", "wait"} <= set(best):
        return "`best` must be an object with value, epoch and wait"
    if not isinstance(meta.get("stopped_early"), bool):
        return "`stopped_early` must be true or false"
    rng = states.get("rng")
    if not isinstance(states.get("optimizer"), dict) or not isinstance(rng, dict):
        return "the optimizer or RNG state is missing"
    for key in ("torch", "data"):
        if not isinstance(rng.get(key), torch.Tensor) or rng[key].dtype != torch.uint8:
            return f"the RNG state `{key}` is not a byte tensor"
    return None
