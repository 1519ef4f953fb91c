"""Tables read whole: CSV cells (pyarrow's multi-threaded reader, or Python's `csv` module),
Parquet files or folders of shards, Arrow IPC files; each as a `Cells` table of columns.

The CSV reader of record is pyarrow (`pip install 'blocks[tables]'`) when it is installed;
without it (a lean install), or with `BLOCKS_CSV_READER=python`, Python's `csv` module reads
the same cells. Both give the same numbers bit for bit (`tests/data/test_readers_agree.py`).
pyarrow reports no line numbers, so a row's file line is found only when an error names it
(`LineIndex`, which counts lines as the Python reader does: quoted newlines, blank lines).
Bounds (`blocks.data.limits`) are checked on the first line, before the file is read.
"""

from __future__ import annotations

import csv
import io
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from blocks.core.errors import Problem, SpecError
from blocks.data.decode import decode_arrow
from blocks.data.limits import check_columns, line_too_long, max_line_bytes
from blocks.data.table import Columns, decode_columns

PARQUET_SUFFIXES = (".parquet", ".pq")
ARROW_SUFFIXES = (".arrow", ".feather", ".ipc")


def have_pyarrow() -> bool:
    """Whether the columnar readers are installed (the `tables` extra)."""
    try:
        import pyarrow.csv  # noqa: F401  # optional: the `tables` extra
    except ImportError:
        return False
    return True


def csv_engine() -> str:
    """`arrow` when pyarrow is installed, else `python`; `BLOCKS_CSV_READER` may choose."""
    wanted = os.environ.get("BLOCKS_CSV_READER", "").strip().lower()
    if wanted == "python":
        return "python"
    return "arrow" if have_pyarrow() else "python"


def use_threads() -> bool:
    """pyarrow's parallel reading, where there are cores to spare: on two cores (shared) the
    single-threaded reader is as fast and leaves the other core to the neighbours."""
    return (os.cpu_count() or 1) > 2


class Cells(ABC):
    """Rows of cells, the first row (a header, or data for a header-less file) included."""

    first: list[str]
    count: int  # rows, the first included
    unit: str = "line"  # what `lines` count: file lines, or rows of a typed table
    has_names = False  # typed tables: the column names are the header, every row is data
    # `n -> order`: the row order a split will want; a reader that can write its rows in that
    # order at no cost (`BlockCells`) does, and says so in `Columns.order`
    row_order: Callable[[int], np.ndarray] | None = None

    @abstractmethod
    def lines(self, start: int) -> Sequence[int]:
        """The file line (or table row) of each row from `start` on, for located errors."""

    def check_width(self, width: int, start: int, path: Path, where: str) -> None:  # noqa: B027 - typed tables are rectangular: nothing to check
        """Every row has `width` cells (a bad row is named by its line)."""

    @abstractmethod
    def decode(self, picked: list[int], start: int, features: list[str], targets: list[str],
               path: Path, where: str, **decode: Any) -> Columns:
        """The `picked` columns of the rows from `start` on, decoded (`decode_columns`)."""


class PythonCells(Cells):
    """Rows as Python's `csv` module read them, with the file line of each."""

    def __init__(self, rows: list[list[str]], lines: list[int] | None = None) -> None:
        self.rows = rows
        self._lines = lines if lines is not None else list(range(1, len(rows) + 1))
        self.first = rows[0] if rows else []
        self.count = len(rows)

    def lines(self, start: int) -> Sequence[int]:
        return self._lines[start:]

    def check_width(self, width: int, start: int, path: Path, where: str) -> None:
        for row, line in zip(self.rows[start:], self._lines[start:], strict=True):
            if len(row) != width:
                raise SpecError(Problem(where, f"{path.name} line {line} has {len(row)} cells, the "
                                        f"header has {width}", "bad_row"))

    def decode(self, picked, start, features, targets, path, where, **decode) -> Columns:
        cells = [[row[i] for i in picked] for row in self.rows[start:]]
        return decode_columns(cells, features, targets, path, where, self.lines(start),
                              unit=self.unit, **decode)


class ArrowCells(Cells):
    """Columns of text cells (pyarrow strings) or of typed values (Parquet, DataFrames)."""

    def __init__(self, table: Any, lines: Any, *, names: list[str] | None = None,
                 unit: str = "row") -> None:
        self.table = table
        self._lines = lines
        self.count = table.num_rows
        if names is not None:  # typed: the names are the header, not a row
            self.first, self.has_names, self.unit = names, True, unit
        else:
            self.first = [table.column(i)[0].as_py() for i in range(table.num_columns)] \
                if table.num_rows else []

    def lines(self, start: int) -> Sequence[int]:
        return _Shifted(self._lines, start)

    def decode(self, picked, start, features, targets, path, where, **decode) -> Columns:
        columns = [self.table.column(i).slice(start) for i in picked]
        return decode_arrow(columns, features, targets, path, where, self.lines(start),
                            unit=self.unit, **decode)


class _Shifted(Sequence):
    def __init__(self, base: Any, start: int) -> None:
        self.base, self.start = base, start

    def __getitem__(self, i):  # type: ignore[override]
        return self.base[i + self.start]

    def __len__(self) -> int:
        return len(self.base) - self.start


class LineIndex(Sequence):
    """The file line of each row of a CSV file, counted by Python's `csv` module (so quoted
    newlines and skipped blank lines count as the Python reader counts them), found only up
    to the row asked for: error paths pay for it, the fast path never does."""

    def __init__(self, path: Path, delimiter: str, count: int) -> None:
        self.path, self.delimiter, self.count = path, delimiter, count
        self._known: list[int] = []

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i):  # type: ignore[override]
        if i < 0:
            i += self.count
        if i >= len(self._known):
            self._known = []
            with open(self.path, newline="", encoding="utf-8-sig", errors="replace") as handle:
                reader = csv.reader(handle, delimiter=self.delimiter)
                for row in reader:
                    if any(cell.strip() for cell in row):
                        self._known.append(reader.line_num)
                        if len(self._known) > i:
                            break
        return self._known[i]


def first_record(path: Path, where: str, delimiter: str) -> list[str]:
    """The first row's cells, read from a bounded prefix: a file without a line end within
    `BLOCKS_MAX_LINE_BYTES` is refused before the rest of it is read."""
    limit = max_line_bytes()
    prefix = b""
    try:
        with open(path, "rb") as handle:
            step = 1 << 16
            while len(prefix) <= limit:  # a growing read: a short first line costs 64 kB
                more = handle.read(min(step, limit + 1 - len(prefix)))
                prefix += more
                if not more or b"\n" in more or b"\r" in more:
                    break
                step *= 4
    except OSError as err:
        raise SpecError(Problem(where, f"cannot read {path}: {err}", "file_unreadable")) from None
    if len(prefix) > limit and b"\n" not in prefix and b"\r" not in prefix:
        raise line_too_long(path, where)
    text = prefix.decode("utf-8-sig", errors="replace")
    try:
        for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter):
            if any(cell.strip() for cell in row):
                check_columns(len(row), where, path)
                return row
    except csv.Error as err:
        raise SpecError(Problem(where, f"cannot read {path.name}: {err}", "file_unreadable")) from None
    return []


def read_csv_cells(path: Path, where: str, delimiter: str = ",", *,
                   engine: str | None = None,
                   numeric: Callable[[list[str]], set[str]] | None = None) -> Cells:
    """A CSV file's rows (blank lines skipped, a UTF-8 BOM dropped), by pyarrow when installed;
    a file pyarrow cannot parse is read again by Python's `csv` module for its located error.

    `numeric(header)`: the columns expected to hold numbers only; pyarrow parses them as it
    reads (in parallel), and the file is read as text instead when one of them holds anything
    else (a missing cell, a name, a non-finite number), so the decoder sees the cells."""
    first = first_record(path, where, delimiter)
    engine = engine or csv_engine()
    if engine == "arrow" and first:
        wanted = numeric(first) if numeric is not None and len(set(first)) == len(first) else None
        if wanted:
            table = _arrow_typed(path, first, wanted, delimiter)
            if table is not None:
                return ArrowCells(table, _Shifted(LineIndex(path, delimiter, table.num_rows + 1), 1),
                                  names=first, unit="line")
        table = _arrow_csv(path, len(first), delimiter)
        if table is not None:
            return ArrowCells(table, LineIndex(path, delimiter, table.num_rows))
    rows, lines = read_csv_lines(path, where, delimiter)
    return PythonCells(rows, lines)


def _arrow_typed(path: Path, header: list[str], numeric: set[str], delimiter: str) -> Any:
    """The table with the `numeric` columns parsed as float64 (the others text), or None when
    a cell of them is not a plain finite number or pyarrow reads another header."""
    import pyarrow as pa  # optional: the `tables` extra
    import pyarrow.compute as pc  # optional: the `tables` extra
    import pyarrow.csv as pcsv  # optional: the `tables` extra

    types = {name: (pa.float64() if name in numeric else pa.string()) for name in header}
    try:
        table = pcsv.read_csv(
            path, read_options=pcsv.ReadOptions(block_size=1 << 20, use_threads=use_threads()),
            parse_options=pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
            convert_options=pcsv.ConvertOptions(
                column_types=types, strings_can_be_null=False, quoted_strings_can_be_null=False,
                null_values=[], true_values=["\x00true"], false_values=["\x00false"]))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.column_names != header:
        return None
    for name in numeric:
        column = table.column(name)
        if not pc.all(pc.is_finite(column)).as_py():  # the text path names the cell as written
            return None
    return table


def _arrow_csv(path: Path, width: int, delimiter: str) -> Any:
    """Every cell as text (nothing inferred, nothing null), blank rows dropped; None when
    pyarrow refuses the file (a short row, bad UTF-8, a huge line): the Python reader decides."""
    import pyarrow as pa  # optional: the `tables` extra
    import pyarrow.compute as pc  # optional: the `tables` extra
    import pyarrow.csv as pcsv  # optional: the `tables` extra

    names = [f"c{i}" for i in range(width)]
    for block in (4 << 20, max(4 << 20, max_line_bytes() + 1)):
        try:
            table = pcsv.read_csv(
                path,
                read_options=pcsv.ReadOptions(column_names=names, block_size=block,
                                              use_threads=use_threads()),
                parse_options=pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
                convert_options=pcsv.ConvertOptions(
                    column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=False,
                    quoted_strings_can_be_null=False, null_values=[]))
            break
        except pa.ArrowInvalid as err:
            if "straddl" not in str(err) or block > (4 << 20):
                return None
    else:  # pragma: no cover - the loop breaks or returns
        return None
    blank = None
    for column in table.columns:  # a row is blank when every cell is; usually column 0 decides
        empty = pc.equal(pc.utf8_trim_whitespace(column), "")
        blank = empty if blank is None else pc.and_(blank, empty)
        if not pc.any(blank).as_py():
            return table
    return table.filter(pc.invert(blank))


def read_csv_lines(path: Path, where: str, delimiter: str = ",") -> tuple[list[list[str]], list[int]]:
    """Rows of a CSV file (blank lines skipped, a UTF-8 BOM dropped) and the file line of each,
    so errors name the line a person sees in an editor; a located error if it cannot be read."""
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            for row in reader:
                if any(cell.strip() for cell in row):
                    rows.append(row)
                    lines.append(reader.line_num)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise SpecError(Problem(where, f"cannot read {path}: {err}", "file_unreadable")) from None
    return rows, lines


def sniff_delimiter(path: Path) -> str:
    """The cell separator of a held-out CSV file, from its first line: the most frequent of
    `,` `;` tab `|` (`,` when none or a tie), so a file need not match the training file's."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as handle:
            first = handle.readline(1 << 16)
    except OSError:
        return ","
    counts = {d: first.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > counts[","] else ","


def read_csv_rows(path: Path, where: str) -> list[list[str]]:
    """Rows of a CSV file, blank lines skipped; a located error if it cannot be read."""
    return read_csv_lines(path, where)[0]


# --- Parquet and Arrow IPC -------------------------------------------------------------------
def is_columnar_file(path: Path) -> bool:
    """A Parquet/Arrow file, or a folder of Parquet shards."""
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES + ARROW_SUFFIXES:
        return True
    return path.is_dir() and any(p.suffix.lower() in PARQUET_SUFFIXES for p in path.iterdir())


def need_pyarrow(what: str, where: str) -> None:
    if not have_pyarrow():
        raise SpecError(Problem(where, f"reading {what} needs pyarrow, which is not installed: "
                                "pip install 'blocks[tables]'", "missing_extra"))


def parquet_files(path: Path, where: str) -> list[Path]:
    """The Parquet file, or the shards of a folder (sorted by name)."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in PARQUET_SUFFIXES)
        if not files:
            raise SpecError(Problem(where, f"folder {str(path)!r} holds no .parquet files",
                                    "empty_data"))
        return files
    return [path]


def read_columnar(path: Path, where: str, columns: list[str] | None = None) -> Any:
    """A Parquet file / folder of shards or an Arrow IPC file as a pyarrow Table."""
    need_pyarrow(path.suffix or "a folder of Parquet shards", where)
    import pyarrow as pa  # optional: the `tables` extra
    import pyarrow.parquet as pq  # optional: the `tables` extra

    try:
        if path.suffix.lower() in ARROW_SUFFIXES:
            import pyarrow.feather as feather  # optional: the `tables` extra

            table = feather.read_table(path)
            check_columns(table.num_columns, where, path)
            return table.select(columns) if columns is not None else table
        files = parquet_files(path, where)
        schema = pq.read_schema(files[0])
        check_columns(len(schema.names), where, path)
        tables = [pq.read_table(f, columns=columns) for f in files]
        return pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    except (OSError, pa.ArrowException) as err:
        raise SpecError(Problem(where, f"cannot read {path.name}: {err}", "file_unreadable")) from None


def typed_cells(table: Any) -> ArrowCells:
    """A pyarrow Table as `Cells`: its column names are the header, rows are counted from 1."""
    return ArrowCells(table, range(1, table.num_rows + 1), names=list(table.column_names))
