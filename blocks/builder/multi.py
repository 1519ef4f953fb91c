"""The multi-input part of `BlocksModel`: an encoder per named input, the combiner, and the
checks that name the input when a tensor is wrong (shape, dtype, device, a missing key).

Every module is made in `__init__` and registered (`nn.ModuleDict`); the forward reads the
dict of tensors in `model.inputs` order, so the combiner always sees the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from blocks.builder.device import mismatch_message
from blocks.core.errors import DeviceMismatchError, InputShapeError
from blocks.spec.model import ModelSpec, ShapeReport
from blocks.spec.shapes import fmt_shape

#: `raw(name, values) -> array of ids` for inputs given as raw strings (set by `blocks.load`)
RawEncoder = Callable[[str, Any], np.ndarray]


class Standardize(nn.Module):
    """`(x - mean) / std` with the training split's statistics, kept as buffers (saved)."""

    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def emit_source(self, writer: Any, path: str) -> Any:
        """`blocks export --to python`: a helper class with the same buffers (loaded from the
        weights file, zeros and ones until then)."""
        name = writer.helper("Standardize", STANDARDIZE)
        return writer.checked(self, f"{name}({self.mean.numel()})", path)


STANDARDIZE = '''
class Standardize(nn.Module):
    """(x - mean) / std with the training split's statistics (buffers in the weights file)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("std", torch.ones(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std
'''


def build_encoders(spec: ModelSpec, shapes: ShapeReport) -> nn.ModuleDict:
    """One `nn.Sequential` per input: its standardisation (numeric, when fitted), its blocks."""
    encoders = {}
    for name, spec_input in spec.inputs.items():
        layers = [layer.block.build(layer.input_shape)
                  for layer in shapes.inputs.encoders[name] if layer.depth == 0]
        if getattr(spec_input, "standardize", False) and spec_input.mean is not None:
            layers.insert(0, Standardize(spec_input.mean, spec_input.std or [1.0] * len(spec_input.mean)))
        encoders[name] = nn.Sequential(*layers)
    return nn.ModuleDict(encoders)


def input_dtypes(spec: ModelSpec) -> dict[str, torch.dtype]:
    return {name: getattr(torch, spec_input.dtype) for name, spec_input in spec.inputs.items()}


def check_inputs(model: Any, x: Any) -> dict[str, torch.Tensor]:
    """`x` as the encoders take it, or an error naming the input that does not fit."""
    names = model._input_names
    if not isinstance(x, Mapping):
        raise InputShapeError(f"model {model.name!r} has inputs {', '.join(names)}: pass a dict "
                              f"of tensors keyed by input name, got {type(x).__name__}")
    missing = [name for name in names if name not in x]
    extra = [str(key) for key in x if key not in model._input_shapes]
    if missing or extra:
        raise InputShapeError(f"model {model.name!r} takes inputs {', '.join(names)}"
                              + (f"; missing: {', '.join(missing)}" if missing else "")
                              + (f"; unexpected: {', '.join(extra)}" if extra else ""))
    out, batch = {}, None
    for name in names:
        value = x[name]
        want_shape, want_dtype = model._input_shapes[name], model._input_dtypes[name]
        if not isinstance(value, torch.Tensor):
            raise InputShapeError(f"model {model.name!r}: input {name!r} must be a tensor, got "
                                  f"{type(value).__name__}")
        if value.shape[1:] != want_shape:
            raise InputShapeError(
                f"model {model.name!r}: input {name!r} expects shape [batch, "
                f"{fmt_shape(tuple(want_shape))[1:]} but got {fmt_shape(tuple(value.shape))}")
        if batch is None:
            batch = value.shape[0]
        elif value.shape[0] != batch:
            raise InputShapeError(f"model {model.name!r}: input {name!r} has {value.shape[0]} "
                                  f"samples, the others {batch}")
        if value.device != model._device:
            if model.on_device_mismatch == "raise":
                raise DeviceMismatchError(mismatch_message(f"input {name!r}", value.device,
                                                           model.name, model._device))
            value = value.to(model._device, non_blocking=True)
        if value.dtype != want_dtype:
            if want_dtype == torch.int64 and not value.dtype.is_floating_point:
                value = value.long()
            elif want_dtype.is_floating_point and value.dtype.is_floating_point and (
                    model.on_device_mismatch == "move"):
                value = value.to(want_dtype)
            else:
                raise InputShapeError(f"model {model.name!r}: input {name!r} expects "
                                      f"{want_dtype} but got {value.dtype}")
        out[name] = value
    return out


def forward_features(model: Any, x: Any) -> torch.Tensor:
    """Encoders, combiner, backbone: what the heads see."""
    x = check_inputs(model, x)
    encoders = model._modules["inputs"]._modules
    parts = [encoders[name](x[name]) for name in model._input_names]
    return model._modules["backbone"](model._modules["combine"](*parts))


def as_inputs(model: Any, x: Any) -> dict[str, torch.Tensor]:
    """A batch of a multi-input model: tensors as they are (ids for text and category inputs);
    arrays and lists of text and category inputs are raw texts and names, encoded with
    `model.raw_encoder` (attached by `blocks.load` and by training)."""
    if not isinstance(x, Mapping):
        raise InputShapeError(f"model {model.name!r} has inputs {', '.join(model._input_names)}: "
                              f"pass a dict keyed by input name, got {type(x).__name__}")
    out = {}
    for name, value in x.items():
        if isinstance(value, torch.Tensor):
            out[name] = value
            continue
        array = np.asarray(value) if not isinstance(value, np.ndarray) else value
        kind = getattr(model.spec.inputs.get(name), "kind", None)
        # text and category inputs: arrays and lists hold raw texts / names (a category named
        # "3" is not id 3); ids come as tensors
        if array.dtype.kind in "OUS" or kind in ("text", "categorical"):
            raw = getattr(model, "raw_encoder", None)
            if raw is None:
                raise InputShapeError(f"model {model.name!r}: input {name!r} got raw values (texts or "
                                      "names; ids come as tensors) but the model has no "
                                      "tokenizer or categories attached; load it from its run "
                                      "folder (blocks.load) to predict on raw rows")
            array = raw(name, [v if isinstance(v, str) or v is None else str(v)
                               for v in np.asarray(value, dtype=object).reshape(-1)])
        if array.dtype.kind not in "biuf":
            raise InputShapeError(f"model {model.name!r}: input {name!r} is not numeric ({array.dtype})")
        tensor = torch.as_tensor(array)
        want = model._input_shapes.get(name)
        if want is not None and tensor.dim() == 1 and tuple(want) == (1,):
            tensor = tensor.reshape(-1, 1)
        dtype = model._input_dtypes.get(name)
        if dtype is not None and tensor.dtype != dtype:
            tensor = tensor.to(dtype)
        out[name] = tensor.to(model._device)
    return out
