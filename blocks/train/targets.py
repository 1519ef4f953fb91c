"""Targets against heads: checked once, with a message naming the head and the sample, and
converted once into what the losses want.

A softmax head takes one int64 class id per sample, in range; a sigmoid head a float `[N, C]`
of values in [0, 1]. Tensors given to `fit`/`evaluate` are checked (and converted) up front, so
the epoch loop needs no per-batch check, which would cost a host sync each; batches from a
Dataset or DataLoader are checked as they come.
"""

from __future__ import annotations

from typing import Any

import torch

from blocks.builder.model import BlocksModel
from blocks.core.errors import DeviceMismatchError
from blocks.spec.heads import SigmoidHead, SoftmaxHead
from blocks.spec.model import SINGLE_HEAD
from blocks.train.errors import TrainingError
from blocks.train.features import is_features
from blocks.train.guards import non_finite_feature

Heads = dict[str, SoftmaxHead | SigmoidHead]


def is_tensor_pair(data: Any) -> bool:
    """`(X, y)` given as tensors (checked and converted up front), not a Dataset or DataLoader."""
    return isinstance(data, tuple | list) and len(data) == 2 and is_features(data[0])


def prepared_targets(y: Any, heads: Heads) -> dict[str, torch.Tensor]:
    """`y` (one head's tensor, or a dict by head) as a dict of the dtypes and shapes the losses
    want."""
    targets = y if isinstance(y, dict) else {SINGLE_HEAD: y}
    return {name: as_target(values, heads.get(name)) for name, values in targets.items()}


def check_data(model: BlocksModel, heads: Heads, x: torch.Tensor, y: Any, *, where: str) -> None:
    """Features against the model's input (shape, finiteness) and targets against its heads."""
    if isinstance(x, dict):  # a multi-input model: per input, named
        _check_inputs(model, x, where)
    else:
        _check_tensor(model, x, where)
    targets = y if isinstance(y, dict) else {SINGLE_HEAD: y}
    unknown = set(targets) - set(heads)
    if unknown or set(heads) - set(targets):
        raise TrainingError(f"{where}: targets are given for {sorted(targets)} but the model's "
                            f"heads are {sorted(heads)}")
    for name, head in heads.items():
        raw = targets[name]
        if (isinstance(head, SoftmaxHead) and isinstance(raw, torch.Tensor)
                and raw.is_floating_point()):
            bad = (raw.reshape(-1) != raw.reshape(-1).round()).nonzero()  # NaN included
            if len(bad):  # .long() would truncate 1.5 to 1 silently
                i = int(bad[0])
                raise TrainingError(f"{where}: {_label(name)} (softmax) needs integer class ids; "
                                    f"sample {i} has {float(raw.reshape(-1)[i])}")
        check_head_targets(name, head, as_target(raw, head), where)


def _check_tensor(model: BlocksModel, x: torch.Tensor, where: str) -> None:
    expected = tuple(model.spec.sample_shape)
    if tuple(x.shape[1:]) != expected:
        raise TrainingError(f"{where}: features have per-sample shape {list(x.shape[1:])}, the "
                            f"model expects {list(expected)}")
    pre = model.spec.preprocess
    not_finite = non_finite_feature(x, allow_nan=pre is not None and pre.impute is not None)
    if not_finite is not None:
        raise TrainingError(f"{where}: {not_finite}")


def _check_inputs(model: BlocksModel, x: dict[str, torch.Tensor], where: str) -> None:
    shapes = model.spec.input_shapes if model.spec.inputs is not None else {}
    if set(x) != set(shapes):
        raise TrainingError(f"{where}: features are given for inputs {sorted(x)} but the model's "
                            f"inputs are {sorted(shapes)}")
    for name, expected in shapes.items():
        if tuple(x[name].shape[1:]) != tuple(expected):
            raise TrainingError(f"{where}: input {name!r} has per-sample shape "
                                f"{list(x[name].shape[1:])}, the model expects {list(expected)}")
        if x[name].is_floating_point():
            not_finite = non_finite_feature(x[name], allow_nan=False)
            if not_finite is not None:
                raise TrainingError(f"{where}: input {name!r}: {not_finite}")
        else:
            vocab = getattr(model.spec.inputs[name], "vocab_size", None)
            if vocab is not None and len(x[name]) and (int(x[name].min()) < 0
                                                       or int(x[name].max()) >= vocab):
                raise TrainingError(f"{where}: input {name!r} holds ids outside [0, {vocab})")


def check_batch(heads: Heads, y: dict[str, torch.Tensor]) -> None:
    """Batches from a Dataset or DataLoader (not checked up front): heads, range, shape."""
    if set(y) != set(heads):
        raise TrainingError(f"batch targets are for {sorted(y)} but the model's heads are "
                            f"{sorted(heads)}")
    for name, head in heads.items():
        check_head_targets(name, head, y[name], "a batch")


def as_target(values: torch.Tensor, head: SoftmaxHead | SigmoidHead | None) -> torch.Tensor:
    """Class ids as int64 for softmax heads; float `[N, C]` for sigmoid heads."""
    if head is None or not isinstance(values, torch.Tensor):
        return values
    if isinstance(head, SoftmaxHead):
        return values if values.dtype == torch.long else values.long()
    if values.dim() == 1 and head.classes == 1:
        values = values.unsqueeze(1)
    return values if values.dtype == torch.float32 else values.float()


def check_head_targets(name: str, head: SoftmaxHead | SigmoidHead, y: torch.Tensor,
                       where: str) -> None:
    """One head's converted targets: on a real device, of the head's shape, in its range."""
    label = _label(name)
    if y.device.type == "meta":
        raise DeviceMismatchError(f"{where}: targets for {label} are on the meta device")
    if isinstance(head, SoftmaxHead):
        if y.dim() != 1:
            raise TrainingError(f"{where}: {label} (softmax, {head.classes} classes) needs one class "
                                f"index per sample, got targets of shape {list(y.shape)}")
        bad = ((y < 0) | (y >= head.classes)).nonzero()
        if len(bad):
            i = int(bad[0])
            raise TrainingError(f"{where}: {label} (softmax) has {head.classes} classes, so targets "
                                f"must be in [0, {head.classes - 1}]; sample {i} has {int(y[i])} "
                                f"({len(bad)} such samples)")
        return
    if y.dim() != 2 or y.shape[1] != head.classes:
        raise TrainingError(f"{where}: {label} (sigmoid, {head.classes} label(s)) needs targets of "
                            f"shape [N, {head.classes}], got {list(y.shape)}")
    bad = (~((y >= 0) & (y <= 1))).nonzero()
    if len(bad):
        i, j = (int(v) for v in bad[0])
        raise TrainingError(f"{where}: {label} (sigmoid) needs targets in [0, 1]; sample {i}, label "
                            f"{j} is {float(y[i, j])}")


def _label(name: str) -> str:
    return f"head {name!r}" if name != SINGLE_HEAD else "the head"
