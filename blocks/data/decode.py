"""Columns of cells -> the model's raw numbers, vectorised with pyarrow.compute.

The same decoding as `blocks.data.table.decode_columns` (numbers, category codes, class ids,
NaN for missing cells) on whole pyarrow columns instead of one Python string at a time. Every
column takes the fast road only when it is plainly regular: a text column of numbers that
pyarrow parses (the syntax it accepts is a subset of Python's `float`, with the same correctly
rounded values), or a column whose few distinct values are names. Anything else (a bad cell,
a missing cell that is not allowed, a non-finite number, an unusual number spelling, a mixed
column) hands that one column to `decode_columns`, so results and error messages (file, line,
column) are the Python reader's own, computed only on the error path.

Columns may be text (a CSV's cells) or typed (Parquet, a DataFrame, a pyarrow Table): numbers
are taken as they are (a null or NaN is a missing cell), names as text.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from blocks.data.limits import check_categories
from blocks.data.table import MISSING, Columns, _number, decode_columns


def _pa():
    import pyarrow as pa  # optional: the `tables` extra
    import pyarrow.compute as pc  # optional: the `tables` extra

    return pa, pc


def as_text_cells(column: Any) -> list[str]:
    """A column as the Python reader's cells: text as it is, numbers in a spelling that reads
    back to the same value (`repr` of a float), a null as an empty (missing) cell."""
    pa, pc = _pa()
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_boolean(column.type):
        column = pc.cast(column, pa.int8())
    if pa.types.is_floating(column.type):
        return ["" if v is None else repr(float(v)) for v in column.to_pylist()]
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return ["" if v is None else v for v in column.to_pylist()]
    return ["" if v is None else str(v) for v in column.to_pylist()]


def decode_arrow(columns: Sequence[Any], features: Sequence[str], targets: Sequence[str],
                 path: Path, where: str, lines: Sequence[int], *,
                 categories: dict[str, list[str]] | None = None,
                 categorical: Sequence[str] = (), infer_categorical: bool = False,
                 missing_ok: bool = False, unknown_category: str = "error",
                 target_labels: dict[str, list[str] | None] | None = None,
                 learn_labels: Sequence[str] = (), unit: str = "line") -> Columns:
    """`decode_columns` for pyarrow columns (`columns`: the feature columns then the target
    columns, in that order); the same options, the same numbers and the same errors."""
    categories = dict(categories or {})
    target_labels = dict(target_labels or {})
    names = [*features, *targets]
    n = len(columns[0]) if columns else 0
    x = np.empty((n, len(features)), dtype=np.float32)
    y = np.empty((n, len(targets)), dtype=np.float64)
    learned_categories: dict[str, list[str]] = {}
    learned_labels: dict[str, list[str]] = {}
    options = {"categories": categories, "categorical": categorical,
               "infer_categorical": infer_categorical, "missing_ok": missing_ok,
               "unknown_category": unknown_category, "target_labels": target_labels,
               "learn_labels": learn_labels, "unit": unit}

    def python(j: int) -> Columns:  # the reader of record, on one column
        cells = [[c] for c in as_text_cells(columns[j])]
        is_target = j >= len(features)
        one = [names[j]]
        return decode_columns(cells, [] if is_target else one, one if is_target else [],
                              path, where, lines, **options)

    casts = _prefetch_casts(columns[:len(features)], features, categories, categorical)
    for j, name in enumerate(names):
        column = _combined(columns[j])  # one column at a time: memory stays one column wide
        if j >= len(features):
            values, learned = _target(column, name, target_labels.get(name),
                                      name in learn_labels, where)
            if values is None:
                decoded = python(j)
                values, learned = decoded.y[:, 0], decoded.labels.get(name)
            y[:, j - len(features)] = values
            if learned is not None:
                learned_labels[name] = learned
            continue
        vocabulary = categories.get(name)
        result = _feature(column, name, vocabulary, name in categorical, infer_categorical,
                          missing_ok, unknown_category, where, path, casts.get(j))
        if result is None:
            decoded = python(j)
            x[:, j] = decoded.x[:, 0]
            if name in decoded.categories:
                learned_categories[name] = decoded.categories[name]
            continue
        x[:, j], learned = result
        if learned is not None:
            learned_categories[name] = learned
    return Columns(x, y, learned_categories, learned_labels)


def _combined(column: Any) -> Any:
    pa, _ = _pa()
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_large_string(column.type):
        column = column.cast(pa.string())
    return column


def _is_text(column: Any) -> bool:
    pa, _ = _pa()
    return pa.types.is_string(column.type)


def _is_numeric(column: Any) -> bool:
    pa, _ = _pa()
    t = column.type
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


def _cast(column: Any) -> np.ndarray | None:
    """A text column cast to float64 by pyarrow, or None when a cell does not parse."""
    pa, pc = _pa()
    try:
        return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _prefetch_casts(columns: list, features: Sequence[str], categories: dict,
                    categorical: Sequence[str]) -> dict[int, Any]:
    """The casts of the text feature columns that may be numbers, run on a thread each
    (pyarrow releases the GIL): on a table of many rows, parsing numbers is most of the work."""
    wanted = [j for j, name in enumerate(features) if name not in categories
              and name not in categorical and _is_text(columns[j])]
    if len(wanted) < 2 or sum(len(columns[j]) for j in wanted) < 200_000:
        return {}
    with ThreadPoolExecutor(max_workers=min(len(wanted), os.cpu_count() or 1)) as pool:
        futures = {j: pool.submit(lambda c: _cast(_combined(c)), columns[j]) for j in wanted}
        return {j: ("done", future.result()) for j, future in futures.items()}


def _numbers(column: Any, cast: Any = None) -> tuple[np.ndarray, np.ndarray] | None:
    """(float64 values, missing mask) of a plainly numeric column; None when it is not one
    (text that does not parse, a non-finite number, an odd spelling): the Python reader decides.
    `cast`: `("done", values or None)` when the cast already ran."""
    pa, pc = _pa()
    if _is_numeric(column):
        values = (column if pa.types.is_float64(column.type)
                  else pc.cast(column, pa.float64(), safe=False)).to_numpy(zero_copy_only=False)
        if not values.flags.writeable:
            values = values.copy()
        missing = np.isnan(values)  # a null, or NaN: a missing cell
        if np.isinf(values).any():
            return None
        return values, missing
    if not _is_text(column):
        return None
    values = cast[1] if cast is not None else _cast(column)  # the fast case: plain numbers
    if values is not None:
        if not np.isfinite(values).all():  # 'nan' is missing, '-nan' and 'inf' are errors
            return None
        return values, np.zeros(len(values), dtype=bool)
    trimmed = pc.utf8_trim_whitespace(column)
    missing = pc.is_in(trimmed, value_set=pa.array(sorted(MISSING))).to_numpy(zero_copy_only=False)
    filled = pc.if_else(pa.array(missing), "0", trimmed)
    try:
        values = pc.cast(filled, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if not np.isfinite(values).all():
        return None
    values = values.copy()
    values[missing] = np.nan
    return values, missing


def _distinct(column: Any, name: str, where: str, path: Path) -> tuple[Any, np.ndarray, list[str]]:
    """(trimmed text column, missing mask, distinct non-missing values), the count of distinct
    values checked against the limit before any Python work on them."""
    pa, pc = _pa()
    if not _is_text(column):
        column = pa.array(as_text_cells(column), type=pa.string())
    elif column.null_count:  # a null (Parquet, a DataFrame) is an empty, missing cell
        column = pc.fill_null(column, "")
    trimmed = pc.utf8_trim_whitespace(column)
    missing = pc.is_in(trimmed, value_set=pa.array(sorted(MISSING))).to_numpy(zero_copy_only=False)
    unique = pc.unique(pc.filter(trimmed, pa.array(~missing)) if missing.any() else trimmed)
    check_categories(len(unique), name, where, path)
    return trimmed, missing, unique.to_pylist()


def _codes(trimmed: Any, vocabulary: list[str]) -> np.ndarray:
    """Index of each cell in `vocabulary` (float64), NaN where it is not there."""
    pa, pc = _pa()
    index = pc.index_in(trimmed, value_set=pa.array(vocabulary, type=pa.string()))
    return pc.cast(index, pa.float64()).to_numpy(zero_copy_only=False).copy()


def _feature(column: Any, name: str, vocabulary: list[str] | None, declared: bool, infer: bool,
             missing_ok: bool, unknown: str, where: str, path: Path,
             cast: Any = None) -> tuple[np.ndarray, list[str] | None] | None:
    """One feature column's float32 values and the vocabulary learned, or None: the Python
    reader decodes this column (and raises the located error if there is one)."""
    learned = None
    if vocabulary is None and not declared:
        numbers = _numbers(column, cast)
        if numbers is not None:
            values, missing = numbers
            if missing.any() and not missing_ok:
                return None
            return values.astype(np.float32), None
        if not infer:
            return None
    trimmed, missing, unique = _distinct(column, name, where, path)
    if missing.any() and not missing_ok:
        return None
    if vocabulary is None:
        if not declared and any(_number(u) is not None for u in unique):
            return None  # numbers beside names: a typo, reported by line
        if not unique:
            return None
        vocabulary = learned = sorted(unique)
    codes = _codes(trimmed, vocabulary)
    unknown_rows = np.isnan(codes) & ~missing
    if unknown_rows.any():
        if unknown != "ignore":
            return None
        codes[unknown_rows] = -1
    codes[missing] = np.nan
    return codes.astype(np.float32), learned


def _target(column: Any, name: str, names: list[str] | None, learnable: bool,
            where: str) -> tuple[np.ndarray | None, list[str] | None]:
    """One target column's class ids or values (float64), and class names learned; (None,
    None) hands the column to the Python reader."""
    pa, pc = _pa()
    if _is_numeric(column):
        if names is None:
            numbers = _numbers(column)
            return (numbers[0], None) if numbers is not None and not numbers[1].any() \
                else (None, None)
        column = pa.array(as_text_cells(column), type=pa.string())
    if not _is_text(column):
        column = pa.array(as_text_cells(column), type=pa.string())
    if column.null_count:  # a missing target: the Python reader names its row
        return None, None
    unique = pc.unique(column)
    if len(unique) > 65_536:  # many values: numbers (sigmoid targets), never class names
        numbers = _numbers(column) if names is None else None
        return (numbers[0], None) if numbers is not None and not numbers[1].any() \
            else (None, None)
    if names is None and all(_number(u) is not None and u == u.strip() for u in unique.to_pylist()):
        numbers = _numbers(column)  # class ids (or sigmoid targets) spelt plainly
        return (numbers[0], None) if numbers is not None else (None, None)
    trimmed = pc.utf8_trim_whitespace(column)
    distinct = pc.unique(trimmed).to_pylist()
    if any(u in MISSING for u in distinct):
        return None, None
    if names is not None and all(u in names for u in distinct):
        return _codes(trimmed, names), None
    numeric = [_number(u) is not None for u in distinct]
    if names is None and learnable and not any(numeric):
        learned = sorted(distinct)
        return _codes(trimmed, learned), learned
    return None, None
