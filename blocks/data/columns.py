"""A table's columns picked by header name: header checks (unique names, the wanted columns
present, a header told from data by its names), then the cells decoded into numbers.

One road for every table (a CSV read by pyarrow or by Python's `csv`, a Parquet file, rows
given in Python): `table_columns` takes `Cells` (`blocks.data.columnar`) and hands the picked
columns to their decoder, so a header-less file, a missing column or a misspelt one get the
same message whichever way the rows came.
"""

from __future__ import annotations

import difflib
import warnings
from pathlib import Path
from typing import Any

from blocks.core.errors import Problem, SpecError
from blocks.data.columnar import Cells, PythonCells
from blocks.data.table import MISSING, Columns


class ExtraColumnsWarning(UserWarning):
    """Columns of an input that the run does not use (a misspelt feature next to the real one)."""


def _cell(text: str, limit: int = 40) -> str:
    """A short, escaped excerpt of a cell for messages (never a whole line of a file)."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def check_header(header: list[str], path: Path, where: str) -> None:
    """Column names must be unique: with two `a` columns, which one is the feature?"""
    seen: dict[str, int] = {}
    for index, name in enumerate(header):
        if name in seen:
            raise SpecError(Problem(where, f"{path.name} has two columns named {_cell(name)} "
                                    f"(columns {seen[name] + 1} and {index + 1}); rename one",
                                    "duplicate_column"))
        seen[name] = index


def short_names(names: list[str], limit: int = 5, width: int = 24) -> str:
    """Column names for a message: escaped, each cut short, at most `limit` of them."""
    def one(name: str) -> str:
        text = repr(name if len(name) <= width else name[:width] + "...")
        return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)

    shown = ", ".join(one(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def first_row_is_header(first: list[str], features: list[str] | None,
                        categories: dict[str, list[str]] | None = None) -> bool:
    """Whether an optional header is there, decided by the column names: a first row naming
    any of the run's features is a header (and must then name them all). One naming none is
    data when it reads as a row of the run's features (numbers, known category names, missing
    cells), so a header-less file may hold category names; otherwise it is a header whose
    names are wrong (reported as missing columns). A run that knows no feature names falls
    back to the cells: numbers only is data."""
    if features is None:
        return not all(_is_number(cell) for cell in first)
    names = set(features)
    if any(cell in names or cell.strip() in names for cell in first):
        return True
    if len(first) != len(features):
        return not all(_is_number(cell) or cell.strip() in MISSING for cell in first)
    vocabularies = categories or {}
    for cell, name in zip(first, features, strict=True):
        text = cell.strip()
        if text in MISSING:
            continue
        if name in vocabularies:
            if text not in vocabularies[name] and not _is_number(text):
                return True
        elif not _is_number(text):
            return True
    return False


def table_columns(rows: Cells | list[list[str]], path: Path, *, features: list[str] | None,
                  targets: list[str], optional_header: bool = False, where: str = "",
                  lines: list[int] | None = None, warn_extra: bool = False,
                  **decode: Any) -> Columns:
    """Features (`.x`, float32 [N, F]) and targets (`.y`, float64 [N, T]) of a table, columns
    by header name, decoded by `decode_columns`/`decode_arrow` (`decode`: their options).

    With `optional_header`, the first row is a header only when it names the run's feature
    columns (`first_row_is_header`); a header-less file has its columns in training order.
    `warn_extra`: warn (`ExtraColumnsWarning`), naming them, about columns the run ignores.
    """
    cells = rows if isinstance(rows, Cells) else PythonCells(rows, lines)
    first = cells.first
    header_less = (optional_header and not cells.has_names
                   and not first_row_is_header(first, features, decode.get("categories")))
    if header_less:
        if targets:
            raise SpecError(Problem(where, "a header row is needed to find the target column(s)",
                                    "missing_header", str(path)))
        if features is not None and len(first) != len(features):
            raise SpecError(Problem(where, f"the first row names none of the run's feature "
                                    f"columns ({short_names(features)}), so it is read as data, "
                                    f"but it has {len(first)} cells for {len(features)} features; "
                                    "add a header row naming the columns", "shape_mismatch",
                                    str(path)))
        header = list(features) if features is not None else [str(i + 1) for i in range(len(first))]
        start, columns = 0, header
    else:
        header, start = list(first), 0 if cells.has_names else 1
        if cells.count - start < 1:
            raise SpecError(Problem(where, "needs a header row and at least one data row",
                                    "empty_data", str(path)))
        check_header(header, path, where)
        wanted = list(targets) + list(features or [])
        present = set(header)
        missing = [name for name in wanted if name not in present]
        if missing:
            # close matches only: a header line of an arbitrary file is not echoed back
            close = sorted({m for name in missing[:20]
                            for m in difflib.get_close_matches(name, header[:5000], 2, 0.7)})
            hint = f"; did you mean {short_names(close)}?" if close else ""
            raise SpecError(Problem(where, f"missing column(s) {short_names(missing)} (the file has "
                                    f"{len(header)} columns{hint})", "unknown_column", str(path)))
        columns = features if features is not None else [c for c in header if c not in targets]
        if warn_extra and features is not None:
            used = set(features) | set(targets)
            extra = [c for c in header if c not in used]
            if extra:
                warnings.warn(f"{path.name}: {len(extra)} column(s) the run does not use are "
                              f"ignored: {short_names(extra, 10)} (the run's features: "
                              f"{short_names(features, 10)})", ExtraColumnsWarning, stacklevel=3)
    position = {name: i for i, name in enumerate(header)}
    picked = [position[name] for name in [*columns, *targets]]
    cells.check_width(len(header), start, path, where)
    return cells.decode(picked, start, list(columns), list(targets), path, where, **decode)
