"""Tables for multi-input models: one CSV (or Parquet) row holds every input (text, category,
numeric and image-path columns) and the target.

Read with pyarrow (every cell as bytes, decoded here so invalid UTF-8 is located, not
replaced); what the data teaches the model is fitted on the training split only: tokenizers,
category names, numeric mean and std, class names. Errors name the file, the row and the
column. Prediction reads the same way without a target and with the run's fitted state.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from blocks.core.errors import Problem, SpecError
from blocks.data.arrays import Split, Splits
from blocks.data.table import MISSING
from blocks.data.text import (
    RawInputs,
    encode_categories,
    encode_texts,
    fit_categories,
    train_tokenizer,
)
from blocks.spec.budget import check_data_bytes
from blocks.spec.inputs import CategoricalInput, ImageInput, NumericInput, TextInput
from blocks.spec.model import ModelSpec
from blocks.spec.recipe import Recipe, multi_input_data_problems

#: cells of one text column held in memory at most (a 1 MB cell is cut when tokenised)
MAX_CELL_BYTES = 16 << 20


def _arrow() -> Any:
    try:
        import pyarrow  # optional: the `text` extra
        import pyarrow.csv
        import pyarrow.parquet
    except ImportError:
        raise SpecError(Problem("data.csv.path", "multi-input tables need pyarrow: pip install "
                                "'blocks[text]'", "missing_dependency")) from None
    return pyarrow


class Table:
    """A table's columns as Python lists of str (None for missing), read once."""

    def __init__(self, path: Path, columns: dict[str, list[str | None]]) -> None:
        self.path, self.columns = path, columns
        self.rows = len(next(iter(columns.values()))) if columns else 0

    def column(self, name: str, where: str) -> list[str | None]:
        if name not in self.columns:
            raise SpecError(Problem(where, f"{self.path} has no column {name!r} (columns: "
                                    f"{', '.join(list(self.columns)[:12])})", "unknown_column",
                                    str(self.path)))
        return self.columns[name]

    def located(self, row: int, column: str) -> str:
        """`file:line` of a data row (the header is line 1; no cell spanning lines before it)."""
        return f"{self.path}:{row + 2}: column {column!r}"


def read_table(path: Path, delimiter: str = ",", where: str = "data.csv.path") -> Table:
    """Every column as decoded text; a bad file, a bad byte or a bad cell is located."""
    pa = _arrow()
    if not path.is_file():
        raise SpecError(Problem(where, f"no such file {path}", "file_not_found", str(path)))
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            table = pa.parquet.read_table(path)
        else:
            names = _header(path, delimiter, where)
            table = pa.csv.read_csv(
                path, read_options=pa.csv.ReadOptions(block_size=1 << 24),
                parse_options=pa.csv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
                convert_options=pa.csv.ConvertOptions(
                    column_types=dict.fromkeys(names, pa.binary()), strings_can_be_null=False))
    except pa.ArrowInvalid as err:
        raise SpecError(Problem(where, f"{path}: cannot read the table: {str(err)[:300]}",
                                "bad_table", str(path))) from None
    columns: dict[str, list[str | None]] = {}
    for name in table.column_names:
        values = table.column(name).to_pylist()
        columns[name] = [_decode(v, path, i, name) for i, v in enumerate(values)]
    return Table(path, columns)


def _header(path: Path, delimiter: str, where: str) -> list[str]:
    with path.open("rb") as handle:
        first = handle.readline(1 << 20)
    try:
        text = first.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError as err:
        raise SpecError(Problem(where, f"{path}:1: the header is not valid UTF-8 (byte "
                                f"{err.start})", "bad_encoding", str(path))) from None
    names = next(csv.reader([text], delimiter=delimiter), [])
    if not names or len(set(names)) != len(names):
        raise SpecError(Problem(where, f"{path}:1: the header must name each column once",
                                "bad_header", str(path)))
    return names


def _decode(value: Any, path: Path, row: int, column: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        if len(value) > MAX_CELL_BYTES:
            raise SpecError(Problem("data", f"{path}:{row + 2}: column {column!r}: a cell of "
                                    f"{len(value):,} bytes (at most {MAX_CELL_BYTES:,})",
                                    "cell_too_large", str(path)))
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as err:
            raise SpecError(Problem("data", f"{path}:{row + 2}: column {column!r}: invalid "
                                    f"UTF-8 at byte {err.start} of the cell; re-save the file "
                                    "as UTF-8", "bad_encoding", str(path))) from None
    elif not isinstance(value, str):
        value = str(value)
    return value


# --- fitting and encoding ---------------------------------------------------------------------
def fit_inputs(model: ModelSpec, table: Table, train: np.ndarray,
               base: Path | None) -> tuple[ModelSpec, RawInputs]:
    """The model spec with what the training rows teach (categories, mean/std), and the
    tokenizers trained on them."""
    inputs, tokenizers = dict(model.inputs), {}
    for name, spec in model.inputs.items():
        where = f"model.inputs.{name}"
        if isinstance(spec, TextInput):
            texts = _texts(table, spec, name)
            tokenizers[name] = train_tokenizer(spec, [texts[i] for i in train], where, base)
        elif isinstance(spec, CategoricalInput) and spec.categories is None:
            values = table.column(_column(spec, name), f"{where}.column")
            names = fit_categories(spec, [_category(values[i]) for i in train], where)
            inputs[name] = spec.model_copy(update={"categories": names})
        elif isinstance(spec, NumericInput) and spec.standardize and spec.mean is None:
            x = numeric(table, spec, name)[train]
            std = x.std(axis=0)
            inputs[name] = spec.model_copy(update={
                "mean": [float(v) for v in x.mean(axis=0)],
                "std": [float(v) if v > 0 else 1.0 for v in std]})
    fitted = ModelSpec.model_validate({**dict(model), "inputs": inputs})
    return fitted, RawInputs(fitted.inputs, tokenizers)


def encode_inputs(model: ModelSpec, raw: RawInputs, table: Table,
                  base: Path | None) -> dict[str, torch.Tensor]:
    """Every input of every row as the tensors the model takes."""
    out = {}
    for name, spec in model.inputs.items():
        width = math.prod(spec.sample_shape) * (8 if spec.dtype == "int64" else 4)
        check_data_bytes(table.rows * width, f"model.inputs.{name}", f"{table.rows:,} rows of "
                         f"input {name!r}")  # refused before the tensors are allocated
        if isinstance(spec, TextInput):
            ids = encode_texts(raw.tokenizers[name], _texts(table, spec, name), spec.max_length)
            out[name] = torch.from_numpy(ids)
        elif isinstance(spec, CategoricalInput):
            values = table.column(_column(spec, name), f"model.inputs.{name}.column")
            out[name] = torch.from_numpy(encode_categories(spec.categories or [],
                                                           [_category(v) for v in values]))
        elif isinstance(spec, NumericInput):
            out[name] = torch.from_numpy(numeric(table, spec, name))
        elif isinstance(spec, ImageInput):
            out[name] = _images(table, spec, name, base or table.path.parent)
        else:
            raise SpecError(Problem(f"model.inputs.{name}", f"a {spec.kind} input is fed as "
                                    "tensors (Trainer.fit), not read from a table", "unsupported"))
    return out


def _category(cell: str | None) -> str | None:
    """A category name; a missing cell (`NA`, empty, ...) is the unknown id 0."""
    return None if cell is None or cell in MISSING else cell


def _column(spec: Any, name: str) -> str:
    return spec.column or name


def _texts(table: Table, spec: TextInput, name: str) -> list[str]:
    values = table.column(_column(spec, name), f"model.inputs.{name}.column")
    return ["" if v is None else v for v in values]  # an empty cell: all padding


def numeric(table: Table, spec: NumericInput, name: str) -> np.ndarray:
    columns = spec.columns or [name]
    out = np.empty((table.rows, len(columns)), dtype=np.float32)
    for j, column in enumerate(columns):
        for i, cell in enumerate(table.column(column, f"model.inputs.{name}.columns")):
            try:
                value = float(cell) if cell is not None and cell not in MISSING else math.nan
            except ValueError:
                raise SpecError(Problem("data", f"{table.located(i, column)}: {cell[:40]!r} is "
                                        "not a number", "bad_value", str(table.path))) from None
            if not math.isfinite(value):
                raise SpecError(Problem("data", f"{table.located(i, column)}: missing or "
                                        "non-finite number", "missing_value", str(table.path)))
            out[i, j] = value
    return out


def _images(table: Table, spec: ImageInput, name: str, base: Path) -> torch.Tensor:
    from blocks.data.images import BadImageError, decode_image  # lazy: Pillow for image columns

    column = _column(spec, name)
    images = []
    for i, cell in enumerate(table.column(column, f"model.inputs.{name}.column")):
        if not cell:
            raise SpecError(Problem("data", f"{table.located(i, column)}: no image path",
                                    "missing_value", str(table.path)))
        try:
            images.append(decode_image(base / cell, tuple(spec.shape), "crop"))
        except BadImageError as err:
            raise SpecError(Problem("data", f"{table.located(i, column)}: {err}", "bad_image",
                                    str(table.path))) from None
    if not images:
        return torch.zeros((0, *spec.shape))
    return torch.stack(images).float() / 255.0  # pixels 0..1, as image folders give them


def targets(model: ModelSpec, table: Table, column: str) -> tuple[torch.Tensor, list[str] | None]:
    """Class ids of the one softmax head, and the class names when the column holds names."""
    head = model.head
    if head is None or head.type != "softmax":
        raise SpecError(Problem("model.heads", "a multi-input table trains one softmax `head` "
                                "(several heads: pass tensors to Trainer.fit)", "unsupported"))
    values = table.column(column, "data.csv.target")
    for i, cell in enumerate(values):
        if cell is None or cell == "":
            raise SpecError(Problem("data.csv.target", f"{table.located(i, column)}: missing "
                                    "target", "missing_value", str(table.path)))
    names = head.labels
    if names is None and all(v.lstrip("-").isdigit() for v in values):
        ids = np.asarray([int(v) for v in values], dtype=np.int64)
        learned = None
    else:
        learned = names or sorted(set(values))
        index = {n: i for i, n in enumerate(learned)}
        for i, cell in enumerate(values):
            if cell not in index:
                raise SpecError(Problem("data.csv.target", f"{table.located(i, column)}: class "
                                        f"{cell[:40]!r} is not one of the head's labels",
                                        "unknown_label", str(table.path)))
        ids = np.asarray([index[v] for v in values], dtype=np.int64)
        learned = learned if names is None else None
    bad = np.flatnonzero((ids < 0) | (ids >= head.classes))
    if len(bad):
        raise SpecError(Problem("data.csv.target", f"{table.located(int(bad[0]), column)}: class "
                                f"{values[bad[0]]!r} is outside the head's {head.classes} classes",
                                "bad_label", str(table.path)))
    return torch.from_numpy(ids), learned


def load_table_splits(recipe: Recipe, base_dir: Path | None, *,
                      model_spec: ModelSpec | None = None, raw: RawInputs | None = None) -> Splits:
    """Train/val tensors (dicts by input name) for a multi-input recipe, split with its seed;
    `model_spec` and `raw` (a trained run's) are used as they are, nothing is refitted."""
    data = recipe.data
    if data.csv is None:
        raise SpecError(Problem("data", "a multi-input model reads a table: give `data.csv` "
                                "(a CSV or .parquet file), or pass tensors to Trainer.fit",
                                "unsupported"))
    problems = multi_input_data_problems(recipe)
    if problems:  # a Recipe made in Python (load_recipe locates these in the file)
        raise SpecError(problems)
    source = data.csv
    if source.features is not None or source.categorical is not None:
        raise SpecError(Problem("data.csv.features", "with `model.inputs`, each input names its "
                                "own columns; leave out `features` and `categorical`",
                                "unsupported"))
    if not isinstance(source.target, str):
        raise SpecError(Problem("data.csv.target", "a multi-input table has one target column",
                                "unsupported"))
    path = Path(source.path)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    table = read_table(path, source.delimiter)
    model = model_spec or recipe.model
    n = table.rows
    order = np.random.default_rng(data.seed).permutation(n)
    n_val = int(round(n * data.val_fraction))
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    if len(train_idx) == 0:
        raise SpecError(Problem("data.val_fraction", f"leaves no training samples out of {n}",
                                "empty_split"))
    y, labels = targets(model, table, source.target)
    if model_spec is None or raw is None:
        model, raw = fit_inputs(model, table, train_idx, base_dir)
    if labels is not None and model.head.labels is None:
        model = model.model_copy(update={"head": model.head.model_copy(update={"labels": labels})})
    x = encode_inputs(model, raw, table, base_dir)

    def take(idx: np.ndarray) -> Split:
        index = torch.as_tensor(idx, dtype=torch.long)
        return Split({k: v[index] for k, v in x.items()}, y[index])

    info = {"samples": n, "kind": "table", "train": len(train_idx), "val": n_val}
    splits = Splits(take(train_idx), take(val_idx) if n_val else None, None, model, info)
    splits.raw_inputs = raw  # the tokenizers: the run folder saves them beside the weights
    return splits


def read_rows(model: ModelSpec, raw: RawInputs, path: Path,
              delimiter: str = ",") -> dict[str, torch.Tensor]:
    """A table of raw rows (no target needed) as the trained model's inputs: `blocks predict`."""
    return encode_inputs(model, raw, read_table(path, delimiter, "INPUT"), path.parent)
