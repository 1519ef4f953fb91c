"""A training Parquet file (or folder of shards) decoded straight into the feature matrix, a
column and a row group at a time, its rows already in the split's order (issue 21).

The label columns (categories, targets) are read first (decoded once the numbers are in).
Each numeric column goes, row group by row group, to its place among the *buckets* of the split's rows (ranges of
the matrix's rows, stored column by column, so one column's values go out in one sweep per
bucket), and each bucket is finally moved to its rows of the matrix and let go. Neither the
decoded table nor a second copy of the matrix ever exists: the load peaks near one float32
feature matrix plus the scratch of pyarrow's column readers (4-6 MB a reader whatever the
rows), so a small table is read by fewer readers while the caller's thread places the values.

Only plainly regular tables take this road, decided from the schema before a value is read:
numeric feature columns of integer, float or boolean type, the categorical and target columns
text or integers. Missing cells (a null; NaN among the numbers) take it when the recipe
imputes (`missing_ok`), as NaN, as the whole-table reader makes them. An infinity, a missing
cell without imputation, or a null target or integer category met on the way sends the table
to the whole-table reader (`read_columnar` + `typed_cells`), which names the bad row or
refuses what it cannot take.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from blocks.data.columnar import (
    ARROW_SUFFIXES,
    Cells,
    _Shifted,
    parquet_files,
    read_columnar,
    typed_cells,
)
from blocks.data.limits import check_columns, read_threads
from blocks.data.row_blocks import (
    Mapped,
    anonymous_array,
    bucket_rows,
    decode_labels,
    finish,
    memory_pool,
    reader_pool,
)
from blocks.data.table import Columns

#: rows of a numeric column read at a time: pyarrow's column reader then holds a page or two,
#: the column chunk's dictionary and a batch, 4-6 MB for 1 MB pages whatever the rows (a whole
#: row group at once: 9-11 MB), for a few % more time
BATCH_ROWS = 4096
#: what one reader of numeric columns is counted to hold (see `reader_count`)
READER_SCRATCH = 4 << 20


def parquet_cells(path: Path, where: str, numeric: Any) -> ParquetColumns | None:
    """The Parquet file or shards at `path` as `ParquetColumns` (`numeric(header)`: the
    columns expected to hold numbers), or None when the schema is not plain (the whole-table
    reader decides). Reads the footers only."""
    import pyarrow as pa  # optional: the `tables` extra
    import pyarrow.parquet as pq  # optional: the `tables` extra

    if path.suffix.lower() in ARROW_SUFFIXES:
        return None
    files = parquet_files(path, where)
    try:
        metadata = [pq.read_metadata(f) for f in files]
        schemas = [meta.schema.to_arrow_schema() for meta in metadata]
    except (OSError, pa.ArrowException):
        return None  # the whole-table reader names the file it cannot read
    schema = schemas[0]
    if any(other != schema for other in schemas[1:]):
        return None
    header = list(schema.names)
    check_columns(len(header), where, path)
    if len(set(header)) != len(header):
        return None
    wanted = numeric(header)
    numbers = [name for name in header if name in wanted]
    if not numbers or not all(_is_number(schema.field(n).type) for n in numbers):
        return None
    groups = [(f, g, meta.row_group(g).num_rows)
              for f, meta in zip(files, metadata, strict=True) for g in range(meta.num_row_groups)]
    return ParquetColumns(path, where, header, set(numbers), schema, groups)


class ParquetColumns(Cells):
    """A plain Parquet table, read when decoded (once): see the module docstring."""

    has_names = True
    unit = "row"

    def __init__(self, path: Path, where: str, header: list[str], numeric: set[str],
                 schema: Any, groups: list[tuple[Path, int, int]]) -> None:
        self.first, self.count = header, sum(rows for _, _, rows in groups)
        self._path, self._where, self._numeric, self._schema = path, where, numeric, schema
        self._groups = groups
        self.whole_table_read = False  # set when a value sent the table to the whole reader
        self._handles: Any = None  # a ParquetFile per reader thread and file, while decoding

    def lines(self, start: int) -> _Shifted:
        return _Shifted(range(1, self.count + 1), start)

    def decode(self, picked, start, features, targets, path, where, **decode) -> Columns:
        self._handles = threading.local()
        try:
            return self._decode(picked, start, features, targets, path, where, decode)
        finally:
            self._handles = None

    def _decode(self, picked, start, features, targets, path, where, decode) -> Columns:
        names = [*features, *targets]
        header_names = [self.first[i] for i in picked]
        plain = [j for j, name in enumerate(header_names[:len(features)]) if name in self._numeric]
        rest = [j for j in range(len(names)) if j not in set(plain)]
        if not all(_is_label(self._schema.field(header_names[j]).type) for j in rest):
            return self._whole(picked, start, features, targets, path, where, decode)
        # the label columns all at once, first: their readers' scratch comes and goes while
        # the buckets are laid out and still empty (they are small columns)
        missing_ok = bool(decode.get("missing_ok"))
        texts = self._label_jobs([(header_names[j], missing_ok and j < len(features))
                                  for j in rest])
        buckets = None
        try:
            order = self.row_order(self.count) if self.row_order is not None else None
            buckets = Buckets(self.count, len(features), order)
            chunks = self._read_into(buckets, texts, [(j, header_names[j]) for j in plain],
                                     missing_ok)
            if chunks is None:
                finish([job for _, job in texts])
                buckets.close()
                return self._whole(picked, start, features, targets, path, where, decode)
            n_features = sum(j < len(features) for j in rest)
            labels = decode_labels({names[j]: chunks.pop(header_names[j]) for j in rest},
                                   n_features, self.count, self.lines(start), path, where,
                                   decode)
            for k, j in enumerate(j for j in rest if j < len(features)):
                buckets.put(j, 0, labels.small_x[:, k])
            del labels.small_x
            x = buckets.matrix()
        finally:
            finish([job for _, job in texts])
            if buckets is not None:
                buckets.close()
        return Columns(x, labels.y, labels.categories, labels.labels, order=order)

    def _whole(self, picked, start, features, targets, path, where, decode) -> Columns:
        """The whole-table reader's answer (its located errors, imputation, or refusal)."""
        self.whole_table_read = True
        cells = typed_cells(read_columnar(self._path, self._where))
        cells.row_order = self.row_order
        return cells.decode(picked, start, features, targets, path, where, **decode)

    def _label_jobs(self, columns: list[tuple[str, bool]]) -> list[tuple[str, Future]]:
        """Reads of each label column's row groups, dictionary-encoded, on the reader threads
        (`columns`: (name, whether a null is a missing cell: a categorical feature's, with
        imputation))."""
        pool = memory_pool()
        threads = reader_pool()
        return [(name, threads.submit(_encoded, self._read, f, g, name, pool, missing))
                for name, missing in columns for f, g, _ in self._groups]

    def _read_into(self, buckets: Buckets, texts: list[tuple[str, Future]],
                   numbers: list[tuple[int, str]], missing_ok: bool) -> dict[str, list] | None:
        """The `numbers` (matrix column, name) read into the buckets, `reader_count` reads at a
        time on the reader threads while this one places the values read, then the label
        columns' chunks (`texts`, read meanwhile); None when a value is not plain (an
        infinity among the numbers; a null or NaN unless `missing_ok`, a null target) or a
        column cannot be read."""
        import pyarrow as pa  # optional: the `tables` extra

        starts = np.cumsum([0] + [rows for _, _, rows in self._groups[:-1]]).tolist()
        threads = reader_pool()
        reads = [(j, start, f, g, rows, name) for j, name in numbers
                 for (f, g, rows), start in zip(self._groups, starts, strict=True)]
        readers = reader_count(buckets.matrix_bytes, read_threads())
        pending: deque = deque()  # (matrix column, first file row, read), oldest first

        def place_oldest() -> bool:
            column, start, read = pending.popleft()
            values = read.values()
            if values is None:
                return False
            buckets.put(column, start, values)
            return True

        chunks: dict[str, list] = {name: [] for name, _ in texts}
        try:
            for j, start, file, group, rows, name in reads:
                if len(pending) == readers:
                    pending[0][2].wait()  # the oldest read done: `readers` read at a time
                read = _NumericRead(self._file, file, group, name, rows, missing_ok)
                read.job = threads.submit(read.run)
                pending.append((j, start, read))
                if len(pending) > readers and not place_oldest():  # while the next one reads
                    return None
            while pending:
                if not place_oldest():
                    return None
            for name, job in texts:
                chunks[name].append(job.result())
        except (OSError, pa.ArrowException):
            return None
        finally:
            finish([read.job for _, _, read in pending])
        if any(chunk is None for found in chunks.values() for chunk in found):
            return None
        return chunks

    def _file(self, file: Path) -> Any:
        """The calling thread's own `ParquetFile` of `file` (made once per decode)."""
        import pyarrow.parquet as pq  # optional: the `tables` extra

        opened = self._handles.__dict__.setdefault("files", {})
        if file not in opened:
            opened[file] = pq.ParquetFile(file, pre_buffer=False, buffer_size=0)
        return opened[file]

    def _read(self, file: Path, group: int, name: str) -> Any:
        """Column `name` of row group `group`, read on the calling thread (pyarrow's own
        threads would keep their heaps' pages)."""
        return self._file(file).read_row_group(group, columns=[name], use_threads=False) \
            .column(0).combine_chunks()


def reader_count(matrix_bytes: int, threads: int) -> int:
    """Readers of numeric columns: as many as `threads` allows while their scratch
    (`READER_SCRATCH` each) stays within half the matrix, and at least one. On a small table
    one reader's scratch is already a sizeable part of the peak; on a large one it is noise."""
    return max(1, min(threads, matrix_bytes // (2 * READER_SCRATCH)))


class Buckets:
    """The feature matrix's rows staged in buckets on their way to it: bucket `b` holds the rows
    of the matrix's range `[b * size, (b + 1) * size)` (in file order), stored column by
    column, with each row's offset in its range. `order`: the file row of each matrix row
    (None: file order)."""

    def __init__(self, count: int, width: int, order: np.ndarray | None) -> None:
        self.count, self.width = count, width
        self.matrix_bytes = count * width * 4
        self.size = size = bucket_rows(count, width)
        self.buckets = -(-count // size)
        # narrow where they can be (numpy converts a slice of them at each use, a few KB)
        kind = np.int32 if self.buckets * size * max(1, width) < 1 << 31 else np.int64
        # kept until the matrix is built, in maps of their own (on the heap, they would pin
        # the pages the temporaries below leave free)
        self.offsets = anonymous_array(count, np.int32)  # by slot: the row within its range
        self.base = anonymous_array(count, kind)
        position = np.arange(count, dtype=kind)  # the matrix row of each file row
        if order is not None:
            position[order] = position.copy()
        bucket = position // size
        # staging slot of each file row: its bucket's rows in file order (in `base` for now);
        # a stable sort of 16-bit keys is a radix sort (of wider ones, a merge sort: 10x)
        keys = bucket.astype(np.int16) if self.buckets < 1 << 15 else bucket
        self.base[np.argsort(keys, kind="stable")] = np.arange(count, dtype=kind)
        del keys
        self.offsets[self.base] = position - bucket * size
        del position
        # where column 0 of each file row's value goes in the staging map; column j is
        # `j * size` further (each bucket holds its `width` columns of `size` rows in turn)
        self.base += bucket * (size * (width - 1))
        del bucket
        self.staged = Mapped(self.buckets * size, max(1, width))
        self.flat = self.staged.values.reshape(-1)

    def put(self, column: int, start: int, values: np.ndarray) -> None:
        """Column `column` of the file rows `start...` (converted to float32 on the way)."""
        self.flat[column * self.size:][self.base[start:start + len(values)]] = values

    def matrix(self) -> np.ndarray:
        """The feature matrix: each bucket moved to its rows (side by side on the reader
        threads) and let go, so the matrix's pages come as the buckets' go."""
        x = np.empty((self.count, self.width), dtype=np.float32)
        size, width = self.size, self.width

        def place(b: int) -> None:
            lo, hi = b * size, min(self.count, (b + 1) * size)
            bucket = self.flat[lo * width:(lo + size) * width].reshape(width, size).T
            x[lo:hi][self.offsets[lo:hi]] = bucket[:hi - lo]
            del bucket
            self.staged.release(lo, lo + size)

        jobs = [reader_pool().submit(place, b) for b in range(self.buckets)]
        try:
            for job in jobs:
                job.result()
        finally:
            finish(jobs)
        return x

    def close(self) -> None:
        if self.staged is not None:
            self.flat = None
            self.staged.close()
            self.staged = None


class _NumericRead:
    """One row group of a numeric column read on a reader thread (`BATCH_ROWS` at a time, with
    the thread's own `ParquetFile`), as float32 values converted as the whole-table decoder
    converts them (`cast(float64, safe=False)`, then float32, a null as NaN), or None when it
    holds an infinite value or one beyond float32's range, or a missing one (null or NaN)
    without `missing_ok` (the whole-table reader then decides: it names the row).

    The values are ready (`wait`) before the thread gives the column reader's memory back
    (`release_unused`, a few ms: mimalloc keeps what a thread frees until that thread
    collects it), so the next read starts on the other thread meanwhile."""

    def __init__(self, open_file: Any, file: Path, group: int, name: str, rows: int,
                 missing_ok: bool = False) -> None:
        self._args = (open_file, file, group, name, rows)
        self._missing_ok = missing_ok
        self._ready = threading.Event()
        self._values: np.ndarray | None = None
        self._error: BaseException | None = None
        self.job: Future | None = None

    def run(self) -> None:
        import pyarrow as pa  # optional: the `tables` extra
        import pyarrow.compute as pc  # optional: the `tables` extra

        open_file, file, group, name, rows = self._args
        try:
            handle = open_file(file)
            values = anonymous_array(rows, np.float32)
            at = 0
            for batch in handle.iter_batches(BATCH_ROWS, row_groups=[group], columns=[name],
                                             use_threads=False):
                column = batch.column(0)
                del batch
                if not pa.types.is_float64(column.type):
                    column = pc.cast(column, pa.float64(), safe=False)
                if (column.null_count and not self._missing_ok) or at + len(column) > rows:
                    return
                # a null as NaN (pyarrow's `to_numpy`), as the whole-table decoder makes it
                values[at:at + len(column)] = column.to_numpy(zero_copy_only=False)
                at += len(column)
                del column
            if at == rows and (not np.isinf(values).any() if self._missing_ok
                               else np.isfinite(values).all()):
                self._values = values
        except BaseException as error:  # noqa: BLE001 - handed to the thread that waits
            self._error = error
        finally:
            self._ready.set()
            pa.default_memory_pool().release_unused()

    def wait(self) -> None:
        self._ready.wait()

    def values(self) -> np.ndarray | None:
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self._values


def _encoded(read: Any, file: Path, group: int, name: str, pool: Any,
             missing_ok: bool = False) -> Any:
    """One row group of a category or target column, dictionary-encoded on its plain values
    (text as `string`), so the decoder sees the values the whole-table reader would; None when
    it has a null, unless `missing_ok` and it holds text: a null is then the empty (missing)
    cell the whole-table reader makes of it. Runs on a reader thread."""
    import pyarrow as pa  # optional: the `tables` extra
    import pyarrow.compute as pc  # optional: the `tables` extra

    column = read(file, group, name)
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_large_string(column.type):
        column = column.cast(pa.string())
    if column.null_count:
        if not (missing_ok and pa.types.is_string(column.type)):
            return None
        column = pc.fill_null(column, "")
    encoded = pc.dictionary_encode(column, memory_pool=pool)
    del column
    pa.default_memory_pool().release_unused()
    return encoded


def _is_number(kind: Any) -> bool:
    import pyarrow as pa  # optional: the `tables` extra

    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)


def _is_label(kind: Any) -> bool:
    """Text (plain or dictionary-encoded) or integers: what a category or target column holds."""
    import pyarrow as pa  # optional: the `tables` extra

    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)
