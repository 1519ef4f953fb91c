"""`import_weights`: fill a built model from torchvision's (or another `blocks` run's) weights.

Sources: a state dict, a `.pth`/`.pt` file (read with `torch.load(weights_only=True)` only, so a
pickle payload never runs), a `.safetensors` file, or a `blocks` run folder.

Two ways to pair tensors:
- `blocks`: by name (another run of a recipe; `only="backbone"` takes just the backbone).
- `torchvision` (any plain PyTorch model): by structure. Tensors are paired in registration
  order within each (role, shape) class, where the role is the tensor's last name part when it
  is a standard one (`weight`, `bias`, `running_mean`, ... ) and "other" for the rest (a class
  token, a layer scale; these compare shapes without size-1 axes, so timm's `[C]` layer scale
  meets a `[C, 1, 1]` one). So a parameter that torchvision registers on a parent module (ViT's
  `class_token`, ConvNeXt's `layer_scale`) still pairs with ours, while names never need to agree.
  Every tensor must pair (unless `strict=False`); the zoo tests prove the pairing by equal logits.

Nothing is copied until every tensor has been paired and checked: a refused import leaves the
model exactly as it was.
"""

from __future__ import annotations

import os
import re
import warnings
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from blocks.core.errors import BlocksError, escape_name
from blocks.core.lazy import nn, torch
from blocks.layers.external import nonfinite_problem, weights_file_problem
from blocks.spec.shapes import fmt_shape
from blocks.spec.weights import Format, WeightsSpec  # noqa: F401 - WeightsSpec: its old home

_ROLES = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked", "in_proj_weight",
          "in_proj_bias"}
RUN_WEIGHTS = "model.safetensors"  # the weights file of a run folder (blocks.run.folder)


class WeightsError(BlocksError, ValueError):
    """Weights that cannot be read, or that do not fit the model (nothing was loaded)."""


@dataclass
class ImportReport:
    """What an import did: model tensors filled (by source name), and what did not pair."""

    format: str
    loaded: dict[str, str] = field(default_factory=dict)  # model name -> source name
    missing: list[str] = field(default_factory=list)  # model tensors left as they were
    unexpected: list[str] = field(default_factory=list)  # source tensors not used

    @property
    def complete(self) -> bool:
        return not self.missing and not self.unexpected

    def __str__(self) -> str:
        text = f"imported {len(self.loaded)} tensors ({self.format})"
        if self.missing:
            text += f"; {len(self.missing)} model tensors not loaded: {_few(self.missing)}"
        if self.unexpected:
            text += f"; {len(self.unexpected)} source tensors unused: {_few(self.unexpected)}"
        return text


def _few(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


# --- reading ---------------------------------------------------------------------------------------
def read_state_dict(source: Mapping[str, torch.Tensor] | nn.Module | str | os.PathLike[str]
                    ) -> tuple[dict[str, torch.Tensor], str | None]:
    """The tensors of `source` and the format its kind implies (`blocks` for a run folder)."""
    if isinstance(source, nn.Module):
        return dict(source.state_dict()), None
    if isinstance(source, Mapping):
        return _only_tensors(dict(source), "the given state dict"), None
    path = Path(source)
    if path.is_dir():
        weights = path / RUN_WEIGHTS
        if not weights.exists():
            raise WeightsError(f"{escape_name(path)} is a folder but not a blocks run (no "
                               f"{RUN_WEIGHTS})")
        return _read_safetensors(weights), "blocks"
    problem = weights_file_problem(path)
    if problem is not None:
        raise WeightsError(f"weights file {escape_name(path)} {problem}")
    if path.suffix == ".safetensors":
        return _read_safetensors(path), None
    return _read_torch(path), None


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise WeightsError(f"{escape_name(path)} is not a readable safetensors file: "
                           f"{escape_name(err)}") from None


def _read_torch(path: Path) -> dict[str, torch.Tensor]:
    import pickle

    shown = escape_name(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        match = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if match is None:
            raise WeightsError(f"{shown} is not a readable PyTorch weights file (damaged, or not "
                               "saved by torch.save)") from None
        raise WeightsError(f"{shown} holds more than tensors: it would call "
                           f"{escape_name(match.group(1))} (refused without running it); only "
                           "plain state dicts load") from None
    except Exception as err:  # noqa: BLE001 - a damaged archive fails in many ways (IndexError...)
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise WeightsError(f"{shown} is not a readable PyTorch weights file (damaged, or not "
                           f"saved by torch.save): {type(err).__name__}: {escape_name(reason)}"
                           ) from None
    if isinstance(loaded, Mapping):
        for key in ("state_dict", "model"):  # training checkpoints that wrap the state dict
            inner = loaded.get(key)
            if isinstance(inner, Mapping):
                loaded = inner
                break
        return _only_tensors(dict(loaded), shown)
    raise WeightsError(f"{shown} holds a {type(loaded).__name__}, not a state dict of tensors")


def _only_tensors(state: dict, where: str) -> dict[str, torch.Tensor]:
    wrong = [key for key, value in state.items() if not isinstance(value, torch.Tensor)]
    if wrong:
        raise WeightsError(f"{where} is not a state dict: {escape_name(wrong[0])!r} is a "
                           f"{type(state[wrong[0]]).__name__}, not a tensor")
    return state


# --- pairing ---------------------------------------------------------------------------------------
def _role(name: str) -> str:
    leaf = name.rsplit(".", 1)[-1]
    return leaf if leaf in _ROLES else "other"


def _pairing_key(name: str, tensor: torch.Tensor) -> tuple:
    """Standard roles pair on their exact shape; "other" tensors (layer scales, tokens) on the
    shape without its size-1 axes, so timm's `[C]` layer scale meets a `[C, 1, 1]` one."""
    role = _role(name)
    shape = tuple(tensor.shape)
    return (role, shape if role != "other" else tuple(d for d in shape if d != 1))


def _describe(name: str, tensor: torch.Tensor) -> str:
    return f"{name!r} {fmt_shape(tuple(tensor.shape))}"


def pair_by_structure(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
                      ) -> tuple[dict[str, str], list[str], list[str]]:
    """(model name -> source name, unpaired model names, unpaired source names)."""
    queues: dict[tuple, deque[str]] = defaultdict(deque)
    for name, tensor in source.items():
        queues[_pairing_key(name, tensor)].append(name)
    pairs: dict[str, str] = {}
    missing: list[str] = []
    for name, tensor in target.items():
        queue = queues.get(_pairing_key(name, tensor))
        if queue:
            pairs[name] = queue.popleft()
        else:
            missing.append(name)
    used = set(pairs.values())
    return pairs, missing, [name for name in source if name not in used]


def pair_by_name(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
                 ) -> tuple[dict[str, str], list[str], list[str]]:
    pairs, missing = {}, []
    for name, tensor in target.items():
        if name in source and source[name].shape == tensor.shape:
            pairs[name] = name
        else:
            missing.append(name)
    return pairs, missing, [name for name in source if name not in pairs]


def _mismatch(model_name: str, missing: list[str], unexpected: list[str],
              source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], fmt: str) -> str:
    """Name the first model tensor and the first checkpoint tensor that found no partner."""
    parts = [f"the weights do not fit model {model_name!r} ({fmt} pairing); nothing was loaded"]
    if missing and unexpected:
        left = set(unexpected)  # a name on both sides (a shape change) is the clearest pair
        ours = next((name for name in missing if name in left), missing[0])
        theirs = ours if ours in left else unexpected[0]
        parts.append(f"first difference: model {_describe(ours, target[ours])} vs "
                     f"checkpoint {_describe(theirs, source[theirs])}")
    if missing:
        parts.append(f"{len(missing)} model tensors get nothing (first: "
                     f"{_describe(missing[0], target[missing[0]])})")
    if unexpected:
        parts.append(f"{len(unexpected)} checkpoint tensors are left over (first: "
                     f"{_describe(unexpected[0], source[unexpected[0]])})")
    parts.append("pass strict=False to load only what fits")
    return "; ".join(parts)


def _guess_format(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> str:
    """`blocks` when the names look like a blocks model's, else pair by structure."""
    shared = len(set(source) & set(target))
    return "blocks" if shared and shared >= len(source) // 2 else "torchvision"


# --- the API ---------------------------------------------------------------------------------------
def import_weights(
    model: nn.Module,
    source: Mapping[str, torch.Tensor] | nn.Module | str | os.PathLike[str],
    *,
    strict: bool = True,
    format: Format = "auto",  # noqa: A002 - the recipe key's name
    only: Literal["backbone"] | None = None,
) -> ImportReport:
    """Copy weights from `source` into `model` (a `blocks` model or any `nn.Module`).

    `format`: `blocks` pairs by name, `torchvision` by structure (see the module docstring),
    `auto` picks `blocks` for a run folder or blocks-named tensors. `only="backbone"` fills
    just `backbone.*` (reuse a trained backbone under new heads); the source's other tensors
    are then not an error. With `strict=True` (default) every model tensor in scope must pair
    and every source tensor must be used; otherwise `WeightsError` names the first differing
    tensors and the model is unchanged. With `strict=False` the pairs that fit are loaded and
    the report lists the rest.
    """
    if format not in ("auto", "torchvision", "blocks"):
        raise WeightsError(f"format must be 'auto', 'torchvision' or 'blocks', got {format!r}")
    if only not in (None, "backbone"):
        raise WeightsError(f"only must be None or 'backbone', got {only!r}")
    tensors, implied = read_state_dict(source)
    target = dict(model.state_dict())
    if only is not None:
        target = {k: v for k, v in target.items() if k.startswith(f"{only}.")}
        if not target:
            raise WeightsError(f"the model has no {only!r} tensors to import into")
    fmt = format if format != "auto" else implied or _guess_format(tensors, target)
    if fmt == "blocks" and only is not None:
        tensors = {k: v for k, v in tensors.items() if k.startswith(f"{only}.")}
    pair = pair_by_name if fmt == "blocks" else pair_by_structure
    pairs, missing, unexpected = pair(tensors, target)
    if only is not None and fmt != "blocks":
        unexpected = []  # the other model's head: not ours to place
    name = getattr(model, "name", type(model).__name__)
    if not pairs or (strict and (missing or unexpected)):
        raise WeightsError(_mismatch(name, missing, unexpected, tensors, target, fmt))
    problem = nonfinite_problem({source_key: tensors[source_key] for source_key in pairs.values()})
    if problem is not None:
        raise WeightsError(f"the checkpoint's {problem}; nothing was loaded")
    for key, source_key in pairs.items():
        if target[key].dtype.is_floating_point != tensors[source_key].dtype.is_floating_point:
            raise WeightsError(f"model tensor {key!r} is {target[key].dtype} but checkpoint "
                               f"tensor {source_key!r} is {tensors[source_key].dtype}; nothing was loaded")
    with torch.no_grad():
        for key, source_key in pairs.items():
            target[key].copy_(tensors[source_key].reshape(target[key].shape))
    if hasattr(model, "check_device"):
        model.check_device()
    return ImportReport(fmt, pairs, missing, unexpected)


def import_from_spec(model: nn.Module, spec: WeightsSpec) -> ImportReport:
    """`model.weights` of a recipe; errors say which key they come from."""
    try:
        report = import_weights(model, spec.file, strict=spec.strict, format=spec.format, only=spec.only)
    except WeightsError as err:
        raise WeightsError(f"model.weights: {err}") from None
    if not report.complete:  # strict: false; say what stayed as initialised
        warnings.warn(f"model.weights ({spec.file}): {report}", stacklevel=3)
    return report
