"""CSV cells -> numbers, as the model's raw input takes them: numbers, category codes, NaN.

Tabular data as it comes holds text: class names in the target column, category names in
feature columns, `NA` or empty cells. Reading turns each into a number the model understands
(a class id, a category's code in its vocabulary, NaN for a missing cell); every other
transformation (imputation, one-hot encoding, standardisation) is the model's own
`preprocess` module, so `blocks predict`, `blocks.load(...).predict`, `evaluate` and exports
agree. Every error names the file line a person sees in an editor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from blocks.core.errors import Problem, SpecError
from blocks.data.limits import check_categories

# what pandas reads as missing by default, less the exotic spellings
MISSING = frozenset({"", "NA", "N/A", "n/a", "na", "NaN", "nan", "NAN", "null", "NULL", "None",
                     "<NA>", "#N/A"})


def is_missing(cell: str) -> bool:
    return cell.strip() in MISSING


def _number(cell: str) -> float | None:
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _cell(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


@dataclass
class Columns:
    """Decoded columns: features as float32 (codes for categories, NaN when missing), targets
    as float64 (class ids), and the vocabularies learned while reading."""

    x: np.ndarray
    y: np.ndarray
    categories: dict[str, list[str]] = field(default_factory=dict)  # feature column -> names
    labels: dict[str, list[str]] = field(default_factory=dict)  # target column -> class names
    order: np.ndarray | None = None  # x's rows are the file's rows in this order (else in order)


def decode_columns(cells: list[list[str]], features: Sequence[str], targets: Sequence[str],
                   path: Path, where: str, lines: Sequence[int], *,
                   categories: dict[str, list[str]] | None = None,
                   categorical: Sequence[str] = (), infer_categorical: bool = False,
                   missing_ok: bool = False, unknown_category: str = "error",
                   target_labels: dict[str, list[str] | None] | None = None,
                   learn_labels: Sequence[str] = (), unit: str = "line") -> Columns:
    """`cells` rows hold the feature columns then the target columns, in that order.

    - `categories`: fixed vocabularies (a trained run's); a name outside one is an error, or
      code -1 (an all-zero one-hot row) with `unknown_category: ignore`;
    - `categorical` / `infer_categorical`: feature columns whose vocabulary is learned here
      (sorted names), declared or found by holding text only (a column mixing numbers and
      text is an error: a typo must not turn a numeric column into categories);
    - `missing_ok`: missing cells become NaN (the model imputes them) instead of an error;
    - `target_labels`: per target column, the class names cells may use; `learn_labels`:
      target columns whose names are learned (sorted) when their cells are text;
    - `unit`: what `lines` count in messages (`line` of a file, `row` of rows given in Python).
    """
    categories = dict(categories or {})
    target_labels = dict(target_labels or {})
    columns = [*features, *targets]
    n = len(cells)
    x = np.empty((n, len(features)), dtype=np.float32)
    y = np.empty((n, len(targets)), dtype=np.float64)
    learned_categories: dict[str, list[str]] = {}
    learned_labels: dict[str, list[str]] = {}

    def fail(i: int, j: int, message: str, kind: str = "bad_value") -> SpecError:
        return SpecError(Problem(where, f"{path.name} {unit} {lines[i]}, column "
                                 f"{_cell(columns[j])}: {message}", kind))

    for j, name in enumerate(columns):
        column = [row[j].strip() for row in cells]
        is_target = j >= len(features)
        out = y[:, j - len(features)] if is_target else x[:, j]
        missing = [c in MISSING for c in column]
        numbers = [None if m else _number(c) for c, m in zip(column, missing, strict=True)]
        text = [i for i in range(n) if not missing[i] and numbers[i] is None]
        if is_target:
            if any(missing):
                i = missing.index(True)
                raise fail(i, j, f"the target is missing ({_cell(column[i])}); a label cannot be "
                           "imputed: fill in or drop the row", "missing_target")
            names = target_labels.get(name)
            if names is not None and all(c in names for c in column):
                index = {c: k for k, c in enumerate(names)}
                out[:] = [index[c] for c in column]
                continue
            if text and names is None and name in learn_labels:
                if len(text) < n:  # a typo in a column of class ids must not become a class
                    i = next(i for i in range(n) if numbers[i] is not None)
                    k = text[0]
                    raise fail(k, j, f"{_cell(column[k])} is a class name, but the column holds "
                               f"class ids elsewhere ({unit} {lines[i]}: {_cell(column[i])}); use "
                               "names or ids throughout", "mixed_column")
                learned = sorted(set(column))
                learned_labels[name] = learned
                index = {c: k for k, c in enumerate(learned)}
                out[:] = [index[c] for c in column]
                continue
            if text:
                i = text[0] if names is None else next(k for k in text if column[k] not in names)
                hint = (f"not one of the head's labels ({', '.join(names[:8])}"
                        f"{' ...' if len(names) > 8 else ''})" if names is not None
                        else "not a number")
                raise fail(i, j, f"{_cell(column[i])} is {hint}",
                           "unknown_label" if names is not None else "bad_value")
            out[:] = numbers
            continue
        vocabulary = categories.get(name)
        if vocabulary is None and (name in categorical or (infer_categorical and text)):
            if infer_categorical and name not in categorical and len(text) < n - sum(missing):
                i = next(i for i in range(n) if numbers[i] is not None)
                k = text[0]
                raise fail(k, j, f"{_cell(column[k])} is not a number, but the column holds "
                           f"numbers elsewhere ({unit} {lines[i]}: {_cell(column[i])}); fix the cell, "
                           "or list the column in `data.csv.categorical`", "mixed_column")
            distinct = {c for c, m in zip(column, missing, strict=True) if not m}
            check_categories(len(distinct), name, where, path)
            vocabulary = sorted(distinct)
            if not vocabulary:
                raise SpecError(Problem(where, f"{path.name}: categorical column {_cell(name)} "
                                        "has no values", "empty_column"))
            learned_categories[name] = vocabulary
        if vocabulary is not None:
            index = {c: k for k, c in enumerate(vocabulary)}
            for i, cell in enumerate(column):
                if missing[i]:
                    if not missing_ok:
                        raise _missing(fail, i, j, column[i])
                    out[i] = np.nan
                elif cell in index:
                    out[i] = index[cell]
                elif unknown_category == "ignore":
                    out[i] = -1
                else:
                    shown = ", ".join(vocabulary[:8]) + (" ..." if len(vocabulary) > 8 else "")
                    raise fail(i, j, f"{_cell(cell)} is not a known category ({shown}); "
                               "set `unknown_category: ignore` to encode unseen ones as all-zero",
                               "unknown_category")
            continue
        for i in range(n):
            if missing[i]:
                if not missing_ok:
                    raise _missing(fail, i, j, column[i])
                out[i] = np.nan
            elif numbers[i] is None:
                message = ("is not a finite number; fill in or drop missing values before "
                           "training" if _is_float(column[i]) else "is not a number")
                raise fail(i, j, f"{_cell(column[i])} {message}", "bad_value")
            else:
                out[i] = numbers[i]
    return Columns(x, y, learned_categories, learned_labels)


def _missing(fail, i: int, j: int, cell: str) -> SpecError:
    return fail(i, j, f"{_cell(cell)} is a missing value; set `data.impute` (mean, median, "
                "most_frequent or constant) to fill it in, or drop the row", "missing_value")
