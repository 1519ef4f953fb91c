"""From a recipe's `data:` section to raw train/val tensors and the model's preprocessing.

Splits hold *raw* inputs (what the source produced, shaped `preprocess.raw_shape`): scaling,
standardisation and resizing are the model's own `preprocess` module (blocks/preprocess.py), so
training, evaluation and prediction all run the same code on the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from blocks.core.errors import Problem, SpecError
from blocks.data.sources import RawData, Targets, load_arrays
from blocks.spec.model import ModelSpec
from blocks.spec.preprocess import PreprocessSpec
from blocks.spec.recipe import Recipe
from blocks.spec.shapes import fmt_shape

TargetTensor = torch.Tensor | dict[str, torch.Tensor]


@dataclass
class Split:
    """Raw samples: tensors `x`, `y`, or (image folders) a `dataset` decoding them on the fly."""

    x: torch.Tensor | None
    y: TargetTensor | None
    dataset: Any = None  # a torch Dataset of (raw input, target) pairs

    def __len__(self) -> int:
        return len(self.dataset) if self.dataset is not None else len(self.x)

    def as_tuple(self) -> tuple[torch.Tensor, TargetTensor]:
        """`(x, y)` tensors; a Dataset's samples are gathered into memory (`data()` does not)."""
        if self.dataset is not None:
            pairs = [self.dataset[i] for i in range(len(self.dataset))]
            return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
        return self.x, self.y

    def data(self) -> Any:
        """What `Trainer.fit`/`evaluate` take: the `(x, y)` tensors, or the Dataset."""
        return self.dataset if self.dataset is not None else (self.x, self.y)


@dataclass
class Splits:
    """Raw train/val samples and the preprocessing the model applies to them.

    `preprocess` is the recipe's declared one, or one derived from the data (scale, z-score
    for tabular data, resize for small images); `None` when the data is fed as it is.
    `model_spec` is the recipe's model with that preprocessing filled in: build this one.
    """

    train: Split
    val: Split | None
    preprocess: PreprocessSpec | None
    model_spec: ModelSpec
    info: dict[str, Any] = field(default_factory=dict)

    def build_model(self, **build_kwargs: Any):
        """`blocks.build(self.model_spec, ...)` with the preprocessing statistics fitted on the
        training split: the model that trains on, and later predicts from, raw inputs."""
        from blocks.builder.model import build

        model = build(self.model_spec, **build_kwargs)
        if model.preprocess_module is not None and self.train.x is not None:
            model.preprocess_module.fit(self.train.x)
        return model


def load_splits(recipe: Recipe, base_dir: str | Path | None = None, *,
                model_spec: ModelSpec | None = None) -> Splits:
    """Raw train/val tensors for `recipe.data`, split with its seed.

    `model_spec` (a trained run's) fixes the preprocessing instead of deriving it from this
    data, so evaluating a run on other data feeds it exactly what its own inputs looked like.
    """
    if recipe.data is None:
        raise SpecError(Problem("data", "the recipe has no `data:` section; add one (e.g. "
                                "`data: {dataset: digits}`) or pass tensors to Trainer.fit",
                                "missing_data"))
    if base_dir is None and recipe.source_path is not None:
        base_dir = recipe.source_path.parent
    spec = recipe.data
    target_spec = model_spec or recipe.model
    raw = load_arrays(spec, target_spec, Path(base_dir) if base_dir else None)
    n = len(raw.dataset) if raw.dataset is not None else len(raw.x)
    order = np.random.default_rng(spec.seed).permutation(n)
    n_val = int(round(n * spec.val_fraction))
    val_idx, train_idx = order[:n_val], order[n_val:]
    if len(train_idx) == 0:
        raise SpecError(Problem("data.val_fraction", f"leaves no training samples out of {n}",
                                "empty_split"))
    info = {"samples": n, "kind": raw.kind, "train": len(train_idx), "val": n_val}
    if raw.dataset is not None:  # image folders: decoded on the fly by Datasets
        from blocks.data.images import image_splits

        return image_splits(raw, recipe, model_spec, train_idx, val_idx, info)
    if model_spec is None:
        preprocess = recipe.model.preprocess or derive_preprocess(
            raw, spec.standardize, recipe.model, impute=spec.impute, fill_value=spec.fill_value)
        model_spec = learned_spec(recipe.model, preprocess, raw.labels)
    _check_missing(raw, model_spec)
    x = raw_inputs(raw.x, model_spec)
    targets = prepare_targets(raw.y, model_spec)

    def take(idx: np.ndarray) -> Split:
        index = torch.as_tensor(idx)
        picked = ({k: v[index] for k, v in targets.items()} if isinstance(targets, dict)
                  else targets[index])
        return Split(x[index], picked)

    return Splits(take(train_idx), take(val_idx) if n_val else None, model_spec.preprocess,
                  model_spec, info)


def learned_spec(model: ModelSpec, preprocess: PreprocessSpec | None,
                 labels: dict[str, list[str]] | None) -> ModelSpec:
    """The recipe's model with what reading the data found: the preprocessing, and class names
    learned from a target column of names (stored in the heads' `labels`)."""
    update: dict[str, Any] = {}
    if preprocess is not model.preprocess:
        update["preprocess"] = preprocess
    for name, names in (labels or {}).items():
        if model.head_specs[name].labels is None:
            head = model.head_specs[name].model_copy(update={"labels": list(names)})
            if model.multi_head:
                update["heads"] = {**(update.get("heads") or model.heads), name: head}
            else:
                update["head"] = head
    if not update:
        return model
    return ModelSpec.model_validate({**dict(model), **update})


def _check_missing(raw: RawData, model_spec: ModelSpec) -> None:
    """Missing cells (NaN) reach the model only when its preprocessing imputes them."""
    pre = model_spec.preprocess
    if (pre is None or pre.impute is None) and np.issubdtype(raw.x.dtype, np.floating) \
            and bool(np.isnan(raw.x).any()):
        raise SpecError(Problem("data.impute", "the data has missing values but the model's "
                                "preprocess does not impute them; set `data.impute`",
                                "missing_value"))


def raw_inputs(x: np.ndarray, model_spec: ModelSpec) -> torch.Tensor:
    """Source samples as the built model takes them: its raw sample shape and input dtype."""
    shape = model_spec.sample_shape
    per_sample = int(np.prod(x.shape[1:])) if x.ndim > 1 else 1
    if per_sample != math.prod(shape):
        trained = "the model takes" if model_spec.preprocess is None else "the run was trained on"
        raise SpecError(Problem("data", f"the data has {per_sample} values per sample but "
                                f"{trained} {math.prod(shape)} (shape {fmt_shape(shape)})",
                                "shape_mismatch"))
    data = torch.from_numpy(np.ascontiguousarray(x))
    dtype = model_spec.input.torch_dtype
    if dtype == torch.int64:
        if data.is_floating_point() and bool((data != data.round()).any()):
            raise SpecError(Problem("data", "the model takes int64 inputs (token ids) but the data "
                                    "has fractional values", "bad_value"))
        data = data.long()
    else:
        data = data.to(dtype)
    return data.reshape(len(data), *shape).contiguous()


def derive_preprocess(raw: RawData, standardize: bool | None, model: ModelSpec, *,
                      impute: str | None = None, fill_value: float = 0.0) -> PreprocessSpec | None:
    """What turns this source's samples into the model's input: impute missing cells, scale
    (digits pixels 0..16), z-score (tabular data by default), one-hot encode categories,
    bilinear resize of square single-channel images."""
    if model.input.dtype == "int64":
        return None
    if raw.preprocess is not None:  # the source knows (image folders: channel statistics)
        return raw.preprocess
    shape = list(model.input.shape)
    features = int(np.prod(raw.x.shape[1:])) if raw.x.ndim > 1 else 1
    standardize = standardize if standardize is not None else raw.kind == "tabular"
    impute = impute if impute not in (None, "refuse") else None
    if raw.categories or impute is not None:
        if raw.kind != "tabular":
            raise SpecError(Problem("data.impute", "imputing missing values applies to CSV data",
                                    "unsupported"))
        spec = PreprocessSpec(raw_shape=[features], scale=raw.scale, standardize=standardize,
                              features=raw.features, categories=raw.categories, impute=impute,
                              fill_value=fill_value, unknown_category=raw.unknown_category,
                              embeddings=_embedding_sizes(raw))
        problem = spec.check_fits(tuple(shape))
        if problem:
            raise SpecError(Problem("model.input.shape", problem, "shape_mismatch"))
        return spec
    resize_from = None
    if features != math.prod(shape):
        side = math.isqrt(features)
        if not (raw.kind == "image" and len(shape) == 3 and shape[0] == 1 and side * side == features):
            raise SpecError(Problem("model.input.shape", f"the data has {features} features per "
                                    f"sample, which cannot be shaped into the model input "
                                    f"{fmt_shape(shape)}", "shape_mismatch"))
        resize_from = [1, side, side]  # resize square images to the model's input size
    raw_shape = [features] if raw.kind in ("tabular", "image") else list(raw.x.shape[1:]) or [1]
    if (raw.scale == 1.0 and not standardize and resize_from is None and raw.features is None
            and raw_shape == shape):
        return None  # the data already is what the model takes
    return PreprocessSpec(raw_shape=raw_shape, scale=raw.scale, standardize=standardize,
                          resize_from=resize_from, features=raw.features)


def _embedding_sizes(raw: RawData) -> dict[str, int] | None:
    """Columns declared `embedding` (size by fastai's rule of thumb, min(600, 1.6 k^0.56)) or
    with an explicit size; None when every category column is one-hot."""
    sizes = {}
    for name, how in (raw.encodings or {}).items():
        if how == "embedding":
            count = len((raw.categories or {}).get(name, [])) or 1
            sizes[name] = min(600, max(1, round(1.6 * count ** 0.56)))
        elif isinstance(how, int):
            sizes[name] = how
    return sizes or None


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
