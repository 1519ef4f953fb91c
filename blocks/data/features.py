"""Raw rows as users hold them -> the float32 feature matrix a trained model takes.

One function for every road into a tabular model: `blocks predict FILE` (CSV, Parquet),
`model.predict_proba(rows)` in Python (a pandas DataFrame, a pyarrow Table, a list of dicts,
a mapping of columns, raw rows holding category names) and any server built on them. Columns
are matched by the run's recorded feature names, category names become the codes of the
run's recorded vocabularies, missing cells NaN when the model imputes them; errors name the
row (or file line) and the column. So one raw row gives one answer on every road.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from blocks.core.errors import Problem, SpecError
from blocks.data.columnar import Cells, PythonCells, have_pyarrow, typed_cells
from blocks.data.columns import table_columns
from blocks.spec.model import ModelSpec


def decoding_options(spec: ModelSpec) -> dict[str, Any]:
    """How a run reads cells: its category vocabularies, and missing cells as NaN when its
    preprocessing imputes them (else they are errors)."""
    pre = spec.preprocess
    if pre is None:
        return {}
    return {"categories": pre.categories, "missing_ok": pre.impute is not None,
            "unknown_category": pre.unknown_category}


def feature_names(spec: ModelSpec) -> list[str] | None:
    pre = spec.preprocess
    return list(pre.features) if pre is not None and pre.features else None


def feature_cells(cells: Cells, spec: ModelSpec, path: Path, *, where: str = "",
                  optional_header: bool = True) -> np.ndarray:
    """The float32 [N, F] raw features of a table of cells, read as the run was trained:
    columns by the run's feature names (extra columns named in a warning), a header told from
    data by those names, category names as codes of the run's vocabularies."""
    return table_columns(cells, path, features=feature_names(spec), targets=[],
                         optional_header=optional_header, where=where, warn_extra=True,
                         **decoding_options(spec)).x


def is_tabular(rows: Any) -> bool:
    """Whether `rows` hold named columns or text cells (a DataFrame, a pyarrow Table, dicts,
    strings), which `feature_matrix` reads, rather than plain numbers."""
    if hasattr(rows, "column_names") and hasattr(rows, "num_rows"):  # pyarrow Table / batch
        return True
    if hasattr(rows, "columns") and hasattr(rows, "dtypes") and hasattr(rows, "iloc"):  # DataFrame
        return True
    if isinstance(rows, Mapping):
        return True
    if isinstance(rows, np.ndarray):
        return rows.dtype.kind in "OUS"
    if isinstance(rows, list | tuple) and rows:
        first = rows[0]
        if isinstance(first, Mapping):
            return True
        if isinstance(first, list | tuple | np.ndarray):
            return any(isinstance(v, str | bytes) or v is None for row in rows[:64] for v in row)
    return False


def feature_matrix(rows: Any, spec: ModelSpec, *, source: str = "input") -> np.ndarray:
    """The float32 feature matrix of raw rows for a model trained on a table.

    `rows`: a pandas DataFrame or a pyarrow Table (columns by name), a list of dicts (one per
    row), a mapping column -> values, or raw rows (lists / an object array) in the run's
    feature order, whose cells may be category names and `None`/`NaN` for missing. The same
    decoding as `blocks predict FILE`; errors name `source row N, column 'c'`.
    """
    path = Path(source)
    names = feature_names(spec)
    if names is None:
        raise SpecError(Problem("", "the model records no feature names (it was not trained on "
                                "a table): give it numbers (a tensor, an array or lists)",
                                "bad_input", source))
    return feature_cells(_as_cells(rows, names, source), spec, path, optional_header=False)


def _as_cells(rows: Any, names: list[str], source: str) -> Cells:
    if hasattr(rows, "column_names") and hasattr(rows, "num_rows"):
        import pyarrow as pa  # optional: the `tables` extra

        table = rows if isinstance(rows, pa.Table) else pa.Table.from_batches([rows])
        return typed_cells(table)
    if hasattr(rows, "columns") and hasattr(rows, "iloc"):  # a pandas DataFrame, duck-typed
        columns = [str(c) for c in rows.columns]
        if have_pyarrow():
            import pyarrow as pa  # optional: the `tables` extra

            try:
                return typed_cells(pa.Table.from_pandas(rows, preserve_index=False))
            except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed object columns: as text
                pass
        return _text_cells({c: rows[c].tolist() for c in rows.columns}, columns)
    if isinstance(rows, Mapping):
        return _columns_cells({str(k): list(v) for k, v in rows.items()})
    if isinstance(rows, list | tuple) and rows and isinstance(rows[0], Mapping):
        columns: dict[str, list] = {}
        for row in rows:
            for key in row:
                columns.setdefault(str(key), [])
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise SpecError(Problem("", f"row {i + 1} is a {type(row).__name__}, not a "
                                        "mapping like row 1", "bad_input", source))
            for key, values in columns.items():
                values.append(row.get(key))
        return _columns_cells(columns)
    array = np.asarray(rows, dtype=object)
    if array.ndim != 2:
        raise SpecError(Problem("", f"raw rows must be a table (rows of {len(names)} cells), got "
                                f"an array of shape {list(array.shape)}", "shape_mismatch", source))
    if array.shape[1] != len(names):
        raise SpecError(Problem("", f"each row has {array.shape[1]} cells but the run was trained "
                                f"on {len(names)} features; pass a DataFrame or dicts to match "
                                "columns by name", "shape_mismatch", source))
    return _columns_cells({name: array[:, j].tolist() for j, name in enumerate(names)})


def _columns_cells(columns: dict[str, list]) -> Cells:
    """Columns of Python values: typed through pyarrow when each column has one type, else
    as text cells (numbers spelled so they read back exactly)."""
    if have_pyarrow():
        import pyarrow as pa  # optional: the `tables` extra

        try:
            return typed_cells(pa.table({k: _plain(v) for k, v in columns.items()}))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
    return _text_cells(columns, list(columns))


def _plain(values: list) -> list:
    """numpy scalars as Python values, NaN floats as missing (None)."""
    out = []
    for v in values:
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and v != v:
            v = None
        out.append(v)
    return out


def _text(value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, bool):
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def _text_cells(columns: dict[str, Sequence], names: list[str]) -> Cells:
    """The Python reader's cells (a header row of names, then rows of text)."""
    keys = list(columns)
    body = [[_text(v) for v in row] for row in zip(*(columns[k] for k in keys), strict=True)]
    cells = PythonCells([list(names), *body], [0, *range(1, len(body) + 1)])
    cells.unit = "row"
    return cells
