"""What `Trainer.fit`/`evaluate` accept as in-memory data, turned into the tensors they train on.

`(X, y)` may hold numpy arrays, nested lists or tensors, of any dtype the model's input can be
cast to without changing a value's meaning (a float64 array for a float32 model, int pixels
for a float model). A cast is announced once with a `DataCastWarning`, never done silently; a
cast that would lose information (fractional values into an int64 model) is an error.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from blocks.core.errors import BlocksError


class DataCastWarning(UserWarning):
    """Training data arrived in another dtype than the model's input and was cast."""


class DataTypeError(BlocksError):
    """Training data that cannot become the model's input (text, objects, fractional ids)."""


def as_tensor_pair(data: Any, model: Any, where: str) -> Any:
    """`(X, y)` of arrays/lists/tensors -> tensors, X in the model's input dtype; anything else
    (a Dataset, a DataLoader, a Split) is returned as it is."""
    if not (isinstance(data, tuple | list) and len(data) == 2) or not _array_like(data[0]):
        return data
    x, y = data
    if isinstance(x, dict):  # a multi-input model: each input checked and cast on its own
        x = {name: _cast(_tensor(v, f"{where}: input {name!r}"), _input_dtype(model, name),
                         f"{where}: input {name!r}") for name, v in x.items()}
        return x, _targets(y, where)
    x = _cast(_tensor(x, f"{where}: features"), model.spec.input.torch_dtype, where)
    return x, _targets(y, where)


def _input_dtype(model: Any, name: str) -> torch.dtype | None:
    spec = (model.spec.inputs or {}).get(name)
    return None if spec is None else getattr(torch, spec.dtype)


def _cast(x: torch.Tensor, want: torch.dtype | None, what: str) -> torch.Tensor:
    if want is None:  # an input the model does not have: the data check names it
        return x
    if x.dtype != want:
        if want == torch.int64:
            if x.is_floating_point() and bool((x != x.round()).any()):
                raise DataTypeError(f"{what}: the model takes int64 token ids but the features "
                                    f"({x.dtype}) have fractional values")
        elif not (x.is_floating_point() or x.dtype in (torch.int8, torch.int16, torch.int32,
                                                       torch.int64, torch.uint8, torch.bool)):
            raise DataTypeError(f"{what}: features of dtype {x.dtype} cannot feed a {want} model")
        warnings.warn(f"{what}: features are {x.dtype}, the model takes {want}; cast them "
                      "(pass them as {want} to avoid this copy)".replace("{want}", str(want)),
                      DataCastWarning, stacklevel=4)
        x = x.to(want)
    return x


def _targets(y: Any, where: str) -> Any:
    if isinstance(y, dict):
        y = {name: _tensor(v, f"{where}: targets of head {name!r}") for name, v in y.items()}
    else:
        y = _tensor(y, f"{where}: targets")
    return y


def _array_like(value: Any) -> bool:
    if isinstance(value, dict):
        return bool(value) and all(_array_like(v) for v in value.values())
    return isinstance(value, torch.Tensor | np.ndarray | list | tuple)


def _tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as err:
        raise DataTypeError(f"{what}: not an array of numbers ({err})") from None
    if array.dtype.kind not in "biuf":
        raise DataTypeError(f"{what}: an array of numbers is needed, got dtype {array.dtype} "
                            "(text or objects: encode them first, e.g. with a CSV data source)")
    return torch.from_numpy(np.ascontiguousarray(array))
