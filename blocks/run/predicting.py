"""A run folder at work: `evaluate_run` on its own or new data, `predict_run` on raw inputs
(tensors, CSV/NPZ files, image folders), with the preprocessing the run learned."""


from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from blocks.builder.model import BlocksModel
from blocks.core.errors import Problem, SpecError
from blocks.data.columnar import is_columnar_file
from blocks.data.images import IMAGE_SUFFIXES, read_images
from blocks.data.sources import check_data_file, load_npz, target_columns
from blocks.data.splits import load_splits, prepare_targets, raw_inputs
from blocks.run.cell_text import text_of as text
from blocks.run.data_record import check_run_data
from blocks.run.folder import (
    RECIPE,
    load,
)
from blocks.run.image_eval import evaluate_image_folder
from blocks.run.multi_inputs import read_labelled_table, rows_as_inputs
from blocks.run.tables import feature_table, held_out_stream, labelled_table, prediction_columns
from blocks.run.validate import load_recipe
from blocks.spec.recipe import Recipe
from blocks.train.features import n_samples, take
from blocks.train.trainer import Trainer


def evaluate_run(run_dir: str | Path, data: str | Path | None = None, *, split: str | None = None,
                 target: str | list[str] | None = None, trust_paths: bool = False,
                 device: str = "auto") -> dict[str, float]:
    """Metrics of a run's model.

    - `data` a `.csv`/`.npz` file: every row of it, as held-out data (`test/` metrics), read
      with the run's feature names and target column(s) (`target` overrides them);
    - `data` a folder: held-out images, one sub-folder per class named by the run's labels
      (`test/` metrics; `blocks.run.image_eval`);
    - `data` a recipe (`.yaml`): that recipe's data split as it says (`split`, default val);
    - no `data`: the run's own data split (`split`, default val). Paths stored in a run folder
      are followed outside it only to the data recorded at training (same size and SHA-256,
      `blocks.run.data_record`), or with `trust_paths` (a shared folder may point anywhere).
    """
    run_dir = Path(run_dir)
    model = load(run_dir)
    run_recipe_ = load_recipe(run_dir / RECIPE)
    trainer_spec = run_recipe_.train.model_copy(update={"device": device})
    if data is not None and Path(data).is_dir() and not is_columnar_file(Path(data)):
        if split is not None or target is not None:
            raise SpecError(Problem("", "--split and --target apply to a recipe's data or a data "
                                    "file, not to an image folder (its sub-folders are the "
                                    "classes)", "bad_argument"))
        return evaluate_image_folder(model, Path(data), trainer_spec)
    if data is not None and (Path(data).suffix.lower() in (".csv", ".npz")
                             or is_columnar_file(Path(data))):
        if split is not None:
            raise SpecError(Problem("", "--split applies to a recipe's data, not to a data file "
                                    "(all of whose rows are evaluated)", "bad_argument"))
        if model.spec.inputs is not None:  # a multi-input run: the table's columns by input
            table = _table_source(run_recipe_)
            column = target or (table.target if table is not None else "target")
            x, y = read_labelled_table(Path(data), model, column)
            return Trainer(model, trainer_spec, quiet=True).evaluate((x, y), split="test")
        held_out = held_out_stream(Path(data), model, _target_columns(run_recipe_, target,
                                                                      model.spec))
        if held_out is None:
            held_out = read_labelled_file(Path(data), model, run_recipe_, target=target)
        return Trainer(model, trainer_spec, quiet=True).evaluate(held_out, split="test")
    if data is not None:
        recipe = load_recipe(data)
    else:
        recipe = run_recipe_
        if not trust_paths:  # only back to the data the run was trained on
            check_run_data(recipe, run_dir)
    splits = load_splits(recipe, model_spec=model.spec,
                         raw_inputs_of=getattr(model, "raw_encoder", None))
    name = split or "val"
    chosen = splits.val if name == "val" else splits.train
    if chosen is None:
        raise SpecError(Problem("data.val_fraction", "the recipe's data has no validation split; "
                                "use --split train or a recipe with val_fraction > 0", "empty_split"))
    return Trainer(model, trainer_spec, quiet=True).evaluate(chosen.data(), split=name)


def read_labelled_file(path: Path, model: BlocksModel, recipe: Recipe, *,
                       target: str | list[str] | None = None) -> tuple[torch.Tensor, Any]:
    """Raw features and targets of a held-out `.csv`/`.npz`, as the run's data had them."""
    if not path.exists():
        raise SpecError(Problem("", "data file does not exist", "file_not_found", str(path)))
    if not is_columnar_file(path):
        check_data_file(path, "data")
    spec = model.spec
    if path.suffix.lower() == ".npz":
        npz = recipe.data.npz if recipe.data is not None and recipe.data.npz is not None else None
        x_key = npz.x if npz else "x"
        y_keys = ({"y": target or (npz.y if npz else "y")} if not spec.multi_head
                  else dict(npz.y) if npz and isinstance(npz.y, dict) else {h: h for h in spec.head_specs})
        arrays = load_npz(path, [x_key, *y_keys.values()], "data")
        y = arrays[y_keys["y"]] if not spec.multi_head else {h: arrays[k] for h, k in y_keys.items()}
        x = arrays[x_key]
    else:
        x, y = labelled_table(path, spec, _target_columns(recipe, target, spec))

    return raw_inputs(np.asarray(x), spec), prepare_targets(y, spec)


def _target_columns(recipe: Recipe, target: str | list[str] | None, spec: Any) -> list[str]:
    if target is not None:
        return [target] if isinstance(target, str) else list(target)
    table = _table_source(recipe)
    if table is not None:
        return target_columns(table.target, spec)
    if not spec.multi_head:
        return ["target"]
    raise SpecError(Problem("", "name the target column(s) with --target: the run was not "
                            "trained from a table (CSV or Parquet)", "missing_target"))


def _table_source(recipe: Recipe) -> Any:
    """The run's `data.csv` or `data.parquet` (whose target column names held-out tables
    share), or None."""
    data = recipe.data
    return None if data is None else (data.csv or data.parquet)


# --- predict -------------------------------------------------------------------------------------
@dataclass
class Predictions:
    """Per head: label ids, label names and class probabilities (rows in input order)."""

    labels: dict[str, torch.Tensor]
    probabilities: dict[str, torch.Tensor]
    names: dict[str, list[str]]
    kinds: dict[str, str]

    def table(self) -> tuple[list[str], list[list[Any]]]:
        """A header and rows: `label` (name) per softmax head, `label/<name>` per sigmoid
        label, then `p/<name>` per class; head names prefix them when there are several."""
        header, columns = prediction_columns(self)  # probabilities at full float32 precision
        columns = [[text(v) for v in column] if isinstance(column, np.ndarray) else column
                   for column in columns]
        return header, [list(row) for row in zip(*columns, strict=True)]


def predict_run(model: BlocksModel | str | Path, inputs: Any, *,
                batch_size: int = 1024) -> Predictions:
    """Labels and probabilities for raw inputs: a `.csv`/`.npz` path, an array, lists or a tensor.

    CSV columns are matched by the run's feature names when it has them (a header-less CSV is
    read as feature rows in training order). Non-finite outputs are an error, never a label.
    """
    if not isinstance(model, BlocksModel):
        model = load(model)
    source = None
    if model.spec.inputs is not None:  # a multi-input run: a table of raw rows, or a dict
        x = rows_as_inputs(model, inputs)
    elif isinstance(inputs, str | Path):
        source = str(inputs)
        inputs = read_feature_file(Path(inputs), model)
    if model.spec.inputs is None:
        x = model.as_input(inputs)
    if model.spec.inputs is None and (x.dim() < 2 or x.shape[1:] != torch.Size(model.spec.sample_shape)):
        got = int(np.prod(x.shape[1:])) if x.dim() > 1 else 1
        raise SpecError(Problem("", f"each input row has {got} values but the model takes "
                                f"{math.prod(model.spec.sample_shape)} per sample (shape "
                                f"{list(model.spec.sample_shape)})", "shape_mismatch", source))
    heads = model.spec.head_specs
    labels: dict[str, list] = {name: [] for name in heads}
    probs: dict[str, list] = {name: [] for name in heads}
    for start in range(0, n_samples(x), batch_size):
        logits = model._eval_logits(take(x, slice(start, start + batch_size)))
        logits = logits if isinstance(logits, dict) else {next(iter(heads)): logits}
        for name, value in logits.items():
            if not bool(torch.isfinite(value).all()):
                row = start + int((~torch.isfinite(value)).any(dim=-1).nonzero()[0])
                raise SpecError(Problem("", f"the model's output for input row {row + 1} is not "
                                        "finite (NaN or inf): the input or the weights hold "
                                        "non-finite or extreme values", "non_finite_output"))
            labels[name].append(heads[name].labels_from_logits(value))
            probs[name].append(heads[name].probabilities(value))
    return Predictions({k: torch.cat(v) for k, v in labels.items()},
                       {k: torch.cat(v) for k, v in probs.items()},
                       {k: model.label_names(k) for k in heads},
                       {k: h.type for k, h in heads.items()})


def read_feature_file(path: Path, model: BlocksModel, *, delimiter: str | None = None) -> np.ndarray:
    """Raw feature rows from `.npz` (array `x`) or CSV (by header name when the run knows its
    feature names; a CSV whose first row is all numbers has no header). Category names become
    their codes and missing cells NaN (when the model imputes), as in training. `delimiter`:
    default the most frequent of `,` `;` tab `|` in the first line."""
    pre = model.spec.preprocess
    if is_columnar_file(path):
        return feature_table(path, model.spec)
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        if pre is None or pre.images is None:
            raise SpecError(Problem("", "the model was not trained on image files; give a .csv "
                                    "or .npz of raw inputs", "bad_input", str(path)))
        return read_images(path, model)[0].numpy()
    if not path.is_file():
        raise SpecError(Problem("", "input file does not exist", "file_not_found", str(path)))
    check_data_file(path, "input")
    if path.suffix.lower() == ".npz":
        return load_npz(path, ["x"], "input")["x"]
    return feature_table(path, model.spec, delimiter=delimiter)


# --- helpers -------------------------------------------------------------------------------------
