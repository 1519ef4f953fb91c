"""From a recipe's `data:` section to raw train/val tensors and the model's preprocessing.

Splits hold *raw* inputs (what the source produced, shaped `preprocess.raw_shape`): scaling,
standardisation and resizing are the model's own `preprocess` module
(`blocks/builder/preprocessing.py`, its spec `blocks/spec/preprocess.py`), so training,
evaluation and prediction all run the same code on the same numbers.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from blocks.core.errors import Problem, SpecError
from blocks.data.arrays import RawData, Split, Splits, Targets, TargetTensor, learned_spec
from blocks.data.images import image_splits
from blocks.data.multi_table import load_table_splits
from blocks.data.sources import _resolve, load_arrays, resolve_table_path, split_target_columns
from blocks.data.streaming import stream_splits
from blocks.spec.model import ModelSpec
from blocks.spec.preprocess import PreprocessSpec
from blocks.spec.recipe import Recipe
from blocks.spec.shapes import fmt_shape

PERMUTE_IN_PLACE_BYTES = 64 << 20  # smaller feature matrices are split by one (faster) gather


def load_splits(recipe: Recipe, base_dir: str | Path | None = None, *,
                model_spec: ModelSpec | None = None, raw_inputs_of: Any = None) -> Splits:
    """Raw train/val tensors for `recipe.data`, split with its seed.

    `model_spec` (a trained run's) fixes the preprocessing instead of deriving it from this
    data (with `raw_inputs_of`, its tokenizers, for a multi-input run), so evaluating a run
    on other data feeds it exactly what its own inputs looked like.
    """
    if recipe.data is None:
        raise SpecError(Problem("data", "the recipe has no `data:` section; add one (e.g. "
                                "`data: {dataset: digits}`) or pass tensors to Trainer.fit",
                                "missing_data"))
    if base_dir is None and recipe.source_path is not None:
        base_dir = recipe.source_path.parent
    spec = recipe.data
    if spec.stream is not None and (model_spec or recipe.model).inputs is None:
        return _streamed(recipe, Path(base_dir) if base_dir else None, model_spec)
    target_spec = model_spec or recipe.model
    if target_spec.inputs is not None:  # several named inputs: one table row holds them all
        return load_table_splits(recipe, Path(base_dir) if base_dir else None,
                                 model_spec=model_spec, raw=raw_inputs_of)

    def split_order(n: int) -> np.ndarray:  # val rows first, then train
        return np.random.default_rng(spec.seed).permutation(n)

    raw = load_arrays(spec, target_spec, Path(base_dir) if base_dir else None,
                      row_order=split_order)
    n = len(raw.dataset) if raw.dataset is not None else len(raw.x)
    order = raw.order if raw.order is not None else split_order(n)
    n_val = int(round(n * spec.val_fraction))
    val_idx, train_idx = order[:n_val], order[n_val:]
    if len(train_idx) == 0:
        raise SpecError(Problem("data.val_fraction", f"leaves no training samples out of {n}",
                                "empty_split"))
    info = {"samples": n, "kind": raw.kind, "train": len(train_idx), "val": n_val}
    if raw.dataset is not None:  # image folders: decoded on the fly by Datasets
        return image_splits(raw, recipe, model_spec, train_idx, val_idx, info)
    if model_spec is None:
        preprocess = recipe.model.preprocess or derive_preprocess(
            raw, spec.standardize, recipe.model, impute=spec.impute, fill_value=spec.fill_value)
        model_spec = learned_spec(recipe.model, preprocess, raw.labels)
    _check_missing(raw, model_spec)
    x = raw_inputs(raw.x, model_spec)
    targets = prepare_targets(raw.y, model_spec)
    raw.y = None  # the decoded targets, no longer needed: their memory goes before the split

    if raw.order is not None:
        pass  # the reader wrote the rows in `order` already
    elif x.element_size() * x.numel() < PERMUTE_IN_PLACE_BYTES or (
            isinstance(raw.x, np.ndarray) and not raw.x.flags.writeable):
        x = x[torch.as_tensor(order)]  # val rows first, then train: each split a view of it
    else:
        x = permute_rows(x, order)  # the same, in place: no second copy of a large matrix

    def take(idx: np.ndarray, rows: slice) -> Split:
        index = torch.as_tensor(idx)
        picked = ({k: v[index] for k, v in targets.items()} if isinstance(targets, dict)
                  else targets[index])
        return Split(x[rows], picked)

    return Splits(take(train_idx, slice(n_val, None)),
                  take(val_idx, slice(0, n_val)) if n_val else None, model_spec.preprocess,
                  model_spec, info)


def permute_rows(x: torch.Tensor, order: np.ndarray) -> torch.Tensor:
    """`x[order]`, computed in place a tenth of the columns at a time: splitting a table
    then costs two slabs of a tenth of the feature matrix, not a second copy (`x` is the
    loader's own array, used nowhere else), for about twice the time of `x[order]`."""
    flat = x.reshape(len(x), -1)
    if flat.data_ptr() != x.data_ptr() or not flat.is_contiguous() or len(x) == 0:
        return x[torch.as_tensor(order)]
    values = flat.numpy()
    step = max(1, values.shape[1] // 10)  # a tenth of the columns (at most) per pass
    for start in range(0, values.shape[1], step):
        slab = np.ascontiguousarray(values[:, start:start + step])  # gathers fast when dense
        values[:, start:start + step] = slab[order]
        del slab
    return x


def _streamed(recipe: Recipe, base_dir: Path | None, model_spec: ModelSpec | None) -> Splits:
    """`data.stream`: the table read in chunks (`blocks.data.streaming`); with a trained run's
    `model_spec`, its preprocessing (evaluating a streamed run reads its split in chunks too)."""
    spec, model = recipe.data, recipe.model
    key = "csv" if spec.csv is not None else "parquet"
    source = getattr(spec, key)
    path = (resolve_table_path if key == "parquet" else _resolve)(source.path, base_dir,
                                                                  f"data.{key}.path")
    missing_ok = spec.impute != "refuse" or bool(model.preprocess and model.preprocess.impute)

    def prepare(x: np.ndarray, y: np.ndarray, spec_: ModelSpec) -> tuple:
        return raw_inputs(x, spec_), prepare_targets(split_target_columns(y, spec_), spec_)

    return stream_splits(recipe, path, source, f"data.{key}", missing_ok,
                         derive=derive_preprocess, prepare=prepare, model_spec=model_spec)


def _check_missing(raw: RawData, model_spec: ModelSpec) -> None:
    """Missing cells (NaN) reach the model only when its preprocessing imputes them."""
    pre = model_spec.preprocess
    if (pre is None or pre.impute is None) and np.issubdtype(raw.x.dtype, np.floating) \
            and _has_nan(raw.x):
        raise SpecError(Problem("data.impute", "the data has missing values but the model's "
                                "preprocess does not impute them; set `data.impute`",
                                "missing_value"))


def _has_nan(x: np.ndarray, rows: int = 1 << 16) -> bool:
    """Whether `x` holds a NaN, a slab of rows at a time (`np.isnan(x)` whole would make a
    mask the size of the data: a quarter of a float32 matrix)."""
    return any(bool(np.isnan(x[i:i + rows]).any()) for i in range(0, len(x), rows))


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
