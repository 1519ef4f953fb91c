"""Checks on training data that torch would otherwise fail on mid-epoch, or silently accept.

- A batchnorm layer that sees one value per channel cannot normalise a batch of one sample
  (torch raises mid-epoch): a lone last sample is left out of each epoch, with a warning, and a
  `batch_size` of 1 is refused before the first step.
- Features must be finite in every split: a NaN in a validation row would make `val/loss` NaN
  and early stopping act on it; the row and column are named instead.
"""

from __future__ import annotations

import math

import torch

from blocks.builder.model import BlocksModel

_BATCHNORMS = ("batchnorm1d", "batchnorm2d")


def single_value_batchnorm(model: BlocksModel) -> str | None:
    """The spec path of a batchnorm block that sees one value per channel per sample, if any."""
    for layer in model.shapes.layers:
        block = layer.block
        is_norm = block.type in _BATCHNORMS or (
            block.type == "torch" and str(getattr(block, "layer", "")).startswith("BatchNorm"))
        if is_norm and math.prod(layer.input_shape[1:]) == 1:
            return f"model.{layer.path} ({block.type})"
    return None


def lone_last_sample(model: BlocksModel, samples: int, batch_size: int) -> str | None:
    """Why the last batch of one sample cannot train (None when it can, or there is none).

    Raises `ValueError` with the fix when no batch could train at all (`batch_size` 1)."""
    if batch_size > 1 and samples % batch_size != 1:
        return None
    layer = single_value_batchnorm(model)
    if layer is None:
        return None
    if batch_size == 1 or samples == 1:
        raise ValueError(f"{layer} normalises one value per channel, which needs at least 2 samples "
                         f"per batch in training; batch_size is {batch_size} and there are "
                         f"{samples} training samples: use batch_size 2 or more")
    return (f"the last training batch would hold 1 sample ({samples} = "
            f"{samples // batch_size} x {batch_size} + 1) and {layer} cannot normalise a batch of "
            "one, so that sample is left out of each epoch (a different one each epoch when "
            "shuffling); pick a batch_size that does not leave 1 over, or set drop_last: true")


def non_finite_feature(x: torch.Tensor, *, allow_nan: bool = False) -> str | None:
    """'sample 3, feature 7 is nan' for the first non-finite value of `x`, or None.

    `allow_nan`: NaN marks a missing value that the model's preprocessing imputes."""
    if not x.is_floating_point():
        return None
    bad = x.isinf() if allow_nan else ~torch.isfinite(x)
    if not bool(bad.any()):
        return None
    first = bad.reshape(len(x), -1).nonzero()[0]
    row, column = int(first[0]), int(first[1])
    value = float(x.reshape(len(x), -1)[row, column])
    count = int(bad.reshape(len(x), -1).any(dim=1).sum())
    return (f"sample {row}, feature {column} is {value} ({count} sample{'s' if count > 1 else ''} "
            "with NaN or inf); fill in or drop missing values first")
