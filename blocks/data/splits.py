"""From a recipe's `data:` section to train/val tensors shaped for its model.

The preprocessing (scaling, reshape, resize) is a small JSON-able object saved with each run,
so `blocks predict` applies exactly what training applied.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from blocks.data.sources import RawData, Targets, load_arrays
from blocks.errors import Problem, SpecError
from blocks.shapes import fmt_shape
from blocks.spec import DTYPES, ModelSpec, Recipe

TargetTensor = torch.Tensor | dict[str, torch.Tensor]


@dataclass
class Preprocess:
    """Feature preparation fixed at training time and saved with the run (`preprocess.json`):
    scale, z-score with the training split's statistics, reshape, optional image resize, dtype."""

    input_shape: list[int]
    mean: list[float] | None = None
    std: list[float] | None = None
    source_shape: list[int] | None = None  # image shape the flat features reshape to first
    dtype: str = "float32"
    scale: float = 1.0  # applied to the raw values first (digits: 1/16)
    features: list[str] | None = None  # column names, so CSV inputs are matched by name

    @property
    def raw_features(self) -> int:
        """Values per raw input row (before reshape or resize)."""
        if self.mean is not None:
            return len(self.mean)
        return math.prod(self.source_shape or self.input_shape)

    def apply(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        data = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
        if self.dtype == "int64":
            return data.long().reshape(len(data), *self.input_shape)
        data = data.float().reshape(len(data), -1)
        if self.scale != 1.0:
            data = data * self.scale
        if self.mean is not None:
            data = (data - torch.tensor(self.mean)) / torch.tensor(self.std)
        if self.source_shape is not None and self.source_shape != self.input_shape:
            data = data.reshape(len(data), *self.source_shape)
            data = F.interpolate(data, size=tuple(self.input_shape[1:]), mode="bilinear",
                                 align_corners=False)
        return data.reshape(len(data), *self.input_shape).to(DTYPES[self.dtype]).contiguous()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Split:
    x: torch.Tensor
    y: TargetTensor

    def __len__(self) -> int:
        return len(self.x)

    def as_tuple(self) -> tuple[torch.Tensor, TargetTensor]:
        return self.x, self.y


@dataclass
class Splits:
    train: Split
    val: Split | None
    preprocess: Preprocess
    info: dict[str, Any] = field(default_factory=dict)


def load_splits(recipe: Recipe, base_dir: str | Path | None = None, *,
                preprocess: Preprocess | None = None) -> Splits:
    """Train/val tensors for `recipe.data`, split with its seed, preprocessed for `recipe.model`.

    `preprocess` (a trained run's) is applied as it is instead of being fitted to this data, so
    evaluating a run on other data sees exactly what training saw.
    """
    if recipe.data is None:
        raise SpecError(Problem("data", "the recipe has no `data:` section; add one (e.g. "
                                "`data: {dataset: digits}`) or pass tensors to Trainer.fit",
                                "missing_data"))
    if base_dir is None and recipe.source_path is not None:
        base_dir = recipe.source_path.parent
    spec = recipe.data
    raw = load_arrays(spec, recipe.model, Path(base_dir) if base_dir else None)
    x = raw.x
    n = len(x)
    order = np.random.default_rng(spec.seed).permutation(n)
    n_val = int(round(n * spec.val_fraction))
    val_idx, train_idx = order[:n_val], order[n_val:]
    if len(train_idx) == 0:
        raise SpecError(Problem("data.val_fraction", f"leaves no training samples out of {n}",
                                "empty_split"))
    if preprocess is None:
        preprocess = _fit_preprocess(x[train_idx], raw, spec.standardize, recipe.model)
    elif int(np.prod(x.shape[1:])) != preprocess.raw_features:
        raise SpecError(Problem("data", f"the data has {int(np.prod(x.shape[1:]))} features per "
                                f"sample but the run was trained on {preprocess.raw_features}",
                                "shape_mismatch"))
    targets = prepare_targets(raw.y, recipe.model)

    def take(idx: np.ndarray) -> Split:
        index = torch.as_tensor(idx)
        picked = ({k: v[index] for k, v in targets.items()} if isinstance(targets, dict)
                  else targets[index])
        return Split(preprocess.apply(x[idx]), picked)

    return Splits(take(train_idx), take(val_idx) if n_val else None, preprocess,
                  {"samples": n, "kind": raw.kind, "train": len(train_idx), "val": n_val})


def _fit_preprocess(x: np.ndarray, raw: RawData, standardize: bool | None,
                    model: ModelSpec) -> Preprocess:
    shape = list(model.input.shape)
    kind = raw.kind
    pre = Preprocess(input_shape=shape, dtype=model.input.dtype, scale=raw.scale,
                     features=raw.features)
    if model.input.dtype == "int64":
        return pre
    flat = x.reshape(len(x), -1).astype(np.float64) * raw.scale
    features = flat.shape[1]
    if standardize if standardize is not None else kind == "tabular":
        std = flat.std(axis=0)
        pre.mean, pre.std = flat.mean(axis=0).tolist(), np.where(std > 0, std, 1.0).tolist()
    if features == math.prod(shape):
        return pre
    side = math.isqrt(features)
    if kind == "image" and len(shape) == 3 and shape[0] == 1 and side * side == features:
        pre.source_shape = [1, side, side]  # resize square images to the model's input size
        return pre
    raise SpecError(Problem("model.input.shape", f"the data has {features} features per sample, "
                            f"which cannot be shaped into the model input {fmt_shape(shape)}",
                            "shape_mismatch"))


def prepare_targets(y: Targets | torch.Tensor, model: ModelSpec) -> TargetTensor:
    """Targets as the losses want them: int64 class ids for softmax, float [N, C] for sigmoid."""
    heads = model.head_specs
    if model.multi_head:
        if not isinstance(y, dict):
            raise SpecError(Problem("data", f"the model has heads {', '.join(heads)}: targets must "
                                    "be a mapping head -> values", "targets_shape"))
        missing = set(heads) - set(y)
        if missing:
            raise SpecError(Problem("data", f"no targets for head(s) {', '.join(sorted(missing))}",
                                    "targets_missing"))
        return {name: _one_target(y[name], head, name) for name, head in heads.items()}
    if isinstance(y, dict):
        raise SpecError(Problem("data", "the model has a single head: targets must be one array",
                                "targets_shape"))
    return _one_target(y, next(iter(heads.values())))


def _one_target(values: Any, head: Any, name: str | None = None) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(values) if not isinstance(values, torch.Tensor) else values)
    if head.type == "softmax":
        t = t.reshape(len(t))
        if t.dtype.is_floating_point:  # e.g. a CSV column: whole numbers only, never truncated
            bad = (t != t.round()).nonzero()
            if len(bad):
                i = int(bad[0])
                label = f"head {name!r}" if name else "the softmax head"
                raise SpecError(Problem("data", f"{label} needs integer class ids; sample {i} has "
                                        f"{float(t[i])}", "bad_target"))
        return t.long()
    return t.float().reshape(len(t), head.classes) if t.numel() == len(t) * head.classes else t.float()
