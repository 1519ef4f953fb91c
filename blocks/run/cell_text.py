"""Cells of a predictions table as text. `text_of` is the definition (a float32 as the shortest
text reading back to the same float32); `float_texts` and `csv_text` write whole columns at once
with pyarrow (the `tables` extra) and give the same bytes as `text_of` + `csv.writer`, about six
times faster: per-cell Python formatting was most of `blocks predict TABLE -o out.csv`."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: cells formatted at once by `csv_text` (a bound on the text held in memory, and on pyarrow's
#: 2 GiB string arrays)
SLICE_CELLS = 1 << 20
#: magnitudes written positionally, as float32 (numpy 1 compared a float32 with 1e-4 in float64)
_POSITIONAL = {np.float32: (np.float32(1e-4), np.float32(1e16))}
#: `-0.0000123` as pyarrow may write a tiny float (numpy writes `-1.23e-05`)
_TINY = r"^(?P<sign>-?)0\.(?P<zeros>0*)(?P<first>\d)(?P<rest>\d*)$"


def text_of(value: Any) -> str:
    """A cell's text: a float as the shortest text that reads back to the same float32
    (positional, or scientific for tiny and huge magnitudes: `2.754018e-16`, not 22 digits)."""
    if isinstance(value, np.floating):
        low, high = _POSITIONAL.get(type(value), (1e-4, 1e16))
        if value == 0 or low <= abs(value) < high or not np.isfinite(value):
            return np.format_float_positional(value, unique=True, trim="-")
        return np.format_float_scientific(value, unique=True, trim="-")
    return str(value)


@dataclass(frozen=True)
class Coded:
    """A column of few distinct values (class names) as codes into `values`: each distinct
    value is formatted and quoted once."""

    codes: np.ndarray
    values: Sequence[Any]

    def __len__(self) -> int:
        return len(self.codes)

    def tolist(self) -> list[Any]:
        return [self.values[i] for i in self.codes.tolist()]


def float_texts(values: np.ndarray) -> Any:
    """`text_of` of every float32 of `values` (flattened), as a pyarrow string array.

    pyarrow's cast writes the same shortest digits; only the form differs at times: a tiny
    magnitude (below 1e-4) it may write positionally (`0.0000123`) or with a one-digit
    exponent (`1.23e-5`), which are rewritten as numpy's `1.23e-05` here, and any other cell
    whose form (positional or scientific) is not `text_of`'s is formatted by `text_of`."""
    import pyarrow as pa  # optional: the `tables` extra
    import pyarrow.compute as pc  # optional: the `tables` extra

    if values.dtype != np.float32:
        raise TypeError(f"float_texts takes float32 values, not {values.dtype}")
    v = np.ascontiguousarray(values).ravel()
    texts = pc.cast(pa.array(v), pa.string())
    with np.errstate(invalid="ignore"):
        mag = np.abs(v)
        low, high = _POSITIONAL[np.float32]
        tiny = (mag < low) & (v != 0)
        scientific = tiny | ((mag >= high) & np.isfinite(v))
        fix = tiny & (mag >= 1e-10)  # below, pyarrow's exponents have two digits like numpy's
    has_e = pc.match_substring(texts, "e").to_numpy(zero_copy_only=False)
    other = (has_e != scientific) & ~fix
    redo = fix | other
    if not redo.any():
        return texts
    fix, other = np.flatnonzero(fix), np.flatnonzero(other)
    redone = pa.concat_arrays([_tiny_texts(texts.take(pa.array(fix))),
                               pa.array([text_of(x) for x in v[other]], pa.string())])
    order = np.argsort(np.concatenate([fix, other]), kind="stable")  # in the cells' order
    return pc.replace_with_mask(texts, pa.array(redo), redone.take(pa.array(order)))


def _tiny_texts(texts: Any) -> Any:
    """pyarrow's texts of nonzero magnitudes below 1e-4 in numpy's scientific form."""
    import pyarrow as pa  # optional: the `tables` extra
    import pyarrow.compute as pc  # optional: the `tables` extra

    fields = pc.extract_regex(texts, _TINY)  # null where pyarrow wrote an exponent already
    sign, zeros, first, rest = (fields.field(k) for k in ("sign", "zeros", "first", "rest"))
    exponent = pc.utf8_lpad(pc.cast(pc.add(pc.utf8_length(zeros), 1), pa.string()), 2, "0")
    dot = pc.if_else(pc.equal(rest, ""), "", pc.binary_join_element_wise(".", rest, ""))
    positional = pc.binary_join_element_wise(sign, first, dot, "e-", exponent, "")
    exponential = pc.replace_substring_regex(texts, r"e-(\d)$", r"e-0\1")  # 1e-5 -> 1e-05
    return pc.if_else(pc.is_valid(fields), positional, exponential)


def csv_quoted(texts: Sequence[str]) -> list[str]:
    """Each text as `csv.writer` (QUOTE_MINIMAL) writes it among other fields of a row, except
    that a text holding a carriage return is quoted too: with `lineterminator="\\n"` the csv
    module leaves `a\\rb` bare, and no CSV reader reads that back."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    quoted = []
    for text in texts:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow((text, ""))  # not alone: a lone empty field would be written `""`
        field = buffer.getvalue()[:-2]
        if "\r" in text and not field.startswith('"'):
            field = '"' + text.replace('"', '""') + '"'
        quoted.append(field)
    return quoted


def write_csv_rows(handle: Any, rows: Iterable[Sequence[str]]) -> None:
    """`csv.writer(handle, lineterminator="\\n").writerows(rows)`, with `csv_quoted`'s quoting
    of carriage returns (a row holding one is written field by field)."""
    writer = csv.writer(handle, lineterminator="\n")
    for row in rows:
        if any("\r" in field for field in row):
            handle.write(",".join(csv_quoted(row)) + "\n")
        else:
            writer.writerow(row)


def csv_text(columns: Sequence[Any]) -> str:
    """The rows of `columns` (float32 or integer arrays, `Coded` columns, lists of values) as
    `csv.writer(lineterminator="\\n").writerows` writes their `text_of` cells."""
    import pyarrow as pa  # optional: the `tables` extra
    import pyarrow.compute as pc  # optional: the `tables` extra

    if not columns:
        return ""
    rows = len(columns[0])
    if any(len(column) != rows for column in columns):
        raise ValueError(f"columns of different lengths: {[len(c) for c in columns]}")
    step = max(1, SLICE_CELLS // len(columns))
    coded = {i: pa.array(csv_quoted([text_of(v) for v in c.values]), pa.string())
             for i, c in enumerate(columns) if isinstance(c, Coded)}
    out = []
    for start in range(0, rows, step):
        cut = slice(start, start + step)
        cells = [coded[i].take(pa.array(c.codes[cut], pa.int64())) if i in coded
                 else _texts(c[cut]) for i, c in enumerate(columns)]
        if len(cells) > 1:
            lines = pc.binary_join_element_wise(*cells, ",")
        else:  # a row of one empty field is written `""` (an empty line would be no row)
            lines = pc.if_else(pc.equal(cells[0], ""), '""', cells[0])
        lines = pc.binary_join_element_wise(lines, "", "\n")
        out.append(_joined(lines))
    return "".join(out)


def _texts(column: Any) -> Any:
    import pyarrow as pa  # optional: the `tables` extra
    import pyarrow.compute as pc  # optional: the `tables` extra

    if isinstance(column, np.ndarray) and column.dtype == np.float32:
        return float_texts(column)
    if isinstance(column, np.ndarray) and column.dtype.kind in "iu":
        return pc.cast(pa.array(column), pa.string())  # str(int): digits and a sign
    texts = [text_of(v) for v in column]
    quoted = dict(zip(unique := list(dict.fromkeys(texts)), csv_quoted(unique), strict=True))
    return pa.array([quoted[t] for t in texts], pa.string())


def _joined(lines: Any) -> str:
    """The texts of a string array, one after the other."""
    offsets = np.frombuffer(lines.buffers()[1], np.int32, len(lines) + 1, lines.offset * 4)
    return lines.buffers()[2].to_pybytes()[offsets[0]:offsets[-1]].decode("utf-8")
