"""Tables held as compact row blocks: float32 rows of their numeric columns and the other
columns dictionary-encoded (`BlockCells`), built a piece at a time by the CSV reader
(`blocks.data.csv_blocks`) so the parsed table never exists whole (issue 21), and what it
shares with the Parquet reader (`blocks.data.parquet_columns`): the reader threads, the
anonymous maps, the decoding of the label columns.

Decoding (`BlockCells.decode`) writes the feature matrix block by block, letting each block go,
and can write its rows already in a split's shuffled order (`Cells.row_order`): rows first go
to the bucket of their destination, then each bucket to its place, so the load peaks near one
float32 feature matrix and the split needs no second copy.
"""

from __future__ import annotations

import mmap
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import numpy as np

from blocks.core.errors import SpecError
from blocks.data.columnar import Cells, _Shifted
from blocks.data.decode import decode_arrow
from blocks.data.limits import read_threads
from blocks.data.table import Columns

BUCKET_BYTES = 4 << 20  # rows of the feature matrix per bucket when rows are shuffled
MIN_BUCKET_BYTES = 64 << 10
STEP_ROWS = 4096  # rows of a block rearranged at a time, when its columns are not the matrix's
_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def reader_pool() -> ThreadPoolExecutor:
    """The reader threads (`read_threads()` of them), made once per process and reused: each
    thread's allocator heap then serves the next load too, where fresh threads would leave
    their heaps, and the pages in them, behind. Jobs on it never wait on other jobs on it."""
    key = (os.getpid(), read_threads())  # a forked child has none of its parent's threads
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = ThreadPoolExecutor(key[1], thread_name_prefix="blocks-read")
    return pool


def finish(jobs: list[Future]) -> None:
    """Cancel the jobs not started and wait for the others (before what they write is let go)."""
    for job in jobs:
        job.cancel()
    wait(jobs)


class Mapped:
    """Rows of float32 numbers (and, for staged rows, an int32 destination each) in their own
    anonymous memory map: letting it go gives its pages back to the system at once (a malloc'd
    array between pyarrow's buffers would pin them: the heap fragments), and pages never written
    cost nothing."""

    def __init__(self, rows: int, width: int, *, offsets: bool = False) -> None:
        size = rows * width * 4
        self.map = _anonymous_map(max(1, size + (rows * 4 if offsets else 0)))
        self.values = np.frombuffer(self.map, dtype=np.float32, count=rows * width).reshape(
            rows, width)
        self.offsets = (np.frombuffer(self.map, dtype=np.int32, count=rows, offset=size)
                        if offsets else None)
        self.rows = 0

    def release(self, start: int, end: int) -> None:
        """Give rows `start:end`'s pages back to the system (their contents are done with)."""
        if not hasattr(self.map, "madvise"):  # pragma: no cover - not on Windows
            return
        width = self.values.shape[1] * 4
        regions = [(start * width, end * width)]
        if self.offsets is not None:
            base = len(self.values) * width
            regions.append((base + start * 4, base + end * 4))
        for lo, hi in regions:
            lo = -(-lo // mmap.PAGESIZE) * mmap.PAGESIZE
            hi = hi // mmap.PAGESIZE * mmap.PAGESIZE
            if hi > lo:
                self.map.madvise(mmap.MADV_DONTNEED, lo, hi - lo)

    def close(self) -> None:
        self.values = self.offsets = None
        self.map.close()


def _anonymous_map(size: int) -> mmap.mmap:
    """Private anonymous memory where the platform has it: its pages fault in faster than the
    shared kind `mmap.mmap(-1, n)` makes (shared memory is backed by a file system)."""
    if hasattr(mmap, "MAP_PRIVATE"):  # pragma: no branch - not on Windows
        return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return mmap.mmap(-1, size)  # pragma: no cover


def anonymous_array(count: int, dtype: Any) -> np.ndarray:
    """A 1-D array in an anonymous memory map of its own: its pages go back to the system with
    the array (on the heap, it would pin the free pages around it)."""
    dtype = np.dtype(dtype)
    return np.frombuffer(_anonymous_map(max(1, count * dtype.itemsize)), dtype=dtype, count=count)


def memory_pool() -> Any:
    """pyarrow's mimalloc pool where it has one (jemalloc, else the system's, where not). A
    reader thread gives its freed pages back to the system after each piece
    (`release_unused`, which for mimalloc frees the calling thread's heap): without it the
    heaps grow by several MB over a load. Freed malloc memory would stay pinned between
    long-lived allocations (the heap fragments)."""
    import pyarrow as pa  # optional: the `tables` extra

    for make in (pa.mimalloc_memory_pool, pa.jemalloc_memory_pool):
        try:
            return make()
        except NotImplementedError:
            continue
    return pa.system_memory_pool()


class BlockCells(Cells):
    """A table as float32 row blocks (its `numeric` columns, in that order) and the other
    columns dictionary-encoded (chunks of rows in file order). `lines`: the file line (or table row) of
    each row, for located errors. Decoded once (the blocks are consumed); the table's readers
    call `decode` once."""

    has_names = True

    def __init__(self, header: list[str], numeric: list[str], blocks: list,
                 others: dict[str, list], count: int, lines: Sequence[int], *,
                 unit: str = "line") -> None:
        self.first, self.count, self.unit = header, count, unit
        self._numeric = {name: k for k, name in enumerate(numeric)}
        self._blocks, self._others = blocks, others
        self._lines = lines

    def lines(self, start: int) -> Sequence[int]:
        return _Shifted(self._lines, start)

    def decode(self, picked, start, features, targets, path, where, **decode) -> Columns:
        if self._blocks is None:
            raise RuntimeError("BlockCells.decode called twice (its blocks are consumed)")
        names = [*features, *targets]
        header_names = [self.first[i] for i in picked]
        plain = [j for j, name in enumerate(header_names[:len(features)]) if name in self._numeric]
        rest = [j for j in range(len(names)) if j not in set(plain)]
        # the categorical features and the targets first, each as a whole column (their
        # vocabularies need every row), one at a time, while the numeric blocks wait
        labels = decode_labels({names[j]: self._others.pop(header_names[j]) for j in rest},
                               sum(j < len(features) for j in rest), self.count,
                               self.lines(start), path, where, decode)
        self._others = {}
        blocks, self._blocks = self._blocks, None
        order = self.row_order(self.count) if self.row_order is not None else None
        layout = _Layout(len(features), plain, [self._numeric[header_names[j]] for j in plain],
                         [j for j in rest if j < len(features)], labels.small_x)
        x = assemble(blocks, self.count, layout, order)
        return Columns(x, labels.y, labels.categories, labels.labels, order=order)


class Labels:
    """The decoded text-like columns of a table: category codes (`small_x`, float32, a column per
    categorical feature, file order), targets (`y`, float64) and their vocabularies."""

    def __init__(self, count: int, features: int, targets: int) -> None:
        self.small_x = np.empty((count, features), dtype=np.float32)
        self.y = np.empty((count, targets), dtype=np.float64)
        self.categories: dict[str, list[str]] = {}
        self.labels: dict[str, list[str]] = {}


def decode_labels(columns: dict[str, list], n_features: int, count: int,
                  lines: Sequence[int], path: Any, where: str, decode: dict) -> Labels:
    """Decode `columns` (name -> dictionary-encoded chunks in file order, consumed: the first
    `n_features` categorical features, the others targets), each as a whole column (its
    vocabulary needs every row), one at a time; a bad cell is named by its line (`lines`)."""
    import pyarrow as pa  # optional: the `tables` extra

    names = list(columns)
    out = Labels(count, n_features, len(names) - n_features)
    for k, name in enumerate(names):
        chunks = columns.pop(name)
        column = pa.chunked_array(chunks, type=None if chunks else
                                  pa.dictionary(pa.int32(), pa.string()))
        is_target = k >= n_features
        args = ([] if is_target else [name], [name] if is_target else [], path, where)
        decoded, rows = _decode_distinct(column, args, decode)
        if decoded is None:  # a bad cell: the whole column, for the error with its line
            decoded = decode_arrow([column], *args, lines, **decode)
        del column
        values = decoded.y if is_target else decoded.x
        target = out.y[:, k - n_features] if is_target else out.small_x[:, k]
        target[:] = values[:, 0] if rows is None else values[rows, 0]
        out.categories.update(decoded.categories)
        out.labels.update(decoded.labels)
        del decoded
        pa.default_memory_pool().release_unused()  # the column's scratch, kept by mimalloc
        memory_pool().release_unused()  # and the column's chunks
    return out


def _decode_distinct(column: Any, args: tuple, decode: dict) -> tuple[Any, Any]:
    """(decoded distinct values, the row -> value index) of a dictionary-encoded column: every
    decoding step is a function of the cell alone, and the vocabularies depend on the set of
    values only, so decoding each distinct value once is decoding the column. (None, None)
    when a value is refused: the caller decodes the column itself, to name the cell's line."""
    import pyarrow as pa  # optional: the `tables` extra

    if column.num_chunks == 0:
        return None, None
    column = pa.table({"c": column}).unify_dictionaries().column("c")
    values = column.chunk(0).dictionary
    try:
        decoded = decode_arrow([values], *args, range(1, len(values) + 1), **decode)
    except SpecError:
        return None, None
    rows = np.concatenate([c.indices.to_numpy(zero_copy_only=False) for c in column.chunks])
    return decoded, rows


class _Layout:
    """Where a block's columns go in the feature matrix: block column `source[i]` to matrix
    column `plain[i]`, and column `k` of `small` (decoded category codes) to `small_at[k]`."""

    def __init__(self, width: int, plain: list[int], source: list[int], small_at: list[int],
                 small: np.ndarray) -> None:
        self.width, self.small = width, small
        self.plain, self.source = _index(plain), _index(source)
        self.small_at = _index(small_at)
        self.direct = not small_at and plain == list(range(width)) and source == plain

    def rows(self, block: Mapped, start: int, lo: int, hi: int) -> np.ndarray:
        """Rows `lo:hi` of the block (the file's rows `start + lo`...) as feature-matrix rows:
        a view where the block's columns are the matrix's, else a copy of those rows only
        (`STEP_ROWS` at most: a whole block's copy on each reader thread would cost MBs)."""
        values = block.values[lo:hi]
        if self.direct:
            return values
        out = np.empty((hi - lo, self.width), dtype=np.float32)
        out[:, self.plain] = values[:, self.source]
        out[:, self.small_at] = self.small[start + lo:start + hi]
        return out

    def steps(self, rows: int) -> list[tuple[int, int]]:
        """The (lo, hi) pieces `rows(...)` takes a block of `rows` rows in."""
        step = max(1, rows) if self.direct else STEP_ROWS
        return [(lo, min(rows, lo + step)) for lo in range(0, rows, step)]


def _index(columns: list[int]) -> slice | list[int]:
    """A run of consecutive columns as a slice (numpy copies slices far faster)."""
    if columns and columns == list(range(columns[0], columns[0] + len(columns))):
        return slice(columns[0], columns[0] + len(columns))
    return columns


def bucket_rows(count: int, width: int) -> int:
    """Rows of the feature matrix per bucket when rows are staged in a split's order: about a
    32nd of the matrix, between `MIN_BUCKET_BYTES` and `BUCKET_BYTES` (the staging's peak
    grows with a bucket; many tiny buckets cost time)."""
    per_row = max(1, width * 4)
    bucket_bytes = min(BUCKET_BYTES, max(MIN_BUCKET_BYTES, count * per_row // 32))
    return max(1, min(count, bucket_bytes // per_row))


def assemble(blocks: list[Mapped], count: int, layout: _Layout,
             order: np.ndarray | None) -> np.ndarray:
    """The float32 feature matrix of the blocks (consumed), row `i` being the file's row
    `order[i]` when an order is given.

    In file order each block is copied to its rows and let go. Shuffled, a block's rows go to
    the bucket holding their destination (a range of the matrix's rows; buckets fill in
    order, so their pages come as blocks go), then each bucket to its range, let go in turn:
    the peak stays near one matrix plus one bucket, where a gather would hold two matrices."""
    x = np.empty((count, layout.width), dtype=np.float32)
    start = 0
    if order is None:
        while blocks:
            block = blocks.pop(0)
            for lo, hi in layout.steps(block.rows):
                x[start + lo:start + hi] = layout.rows(block, start, lo, hi)
            start += block.rows
            block.close()
        return x
    kind = np.int32 if count < 1 << 31 else np.int64
    position = np.empty(count, dtype=kind)
    position[order] = np.arange(count, dtype=kind)
    size = bucket_rows(count, layout.width)
    buckets = -(-count // size)
    # bucket b holds exactly the rows of x's range [b * size, (b + 1) * size), staged in the
    # order they come at rows b * size + 0, 1, ... of one map: pages fill as blocks go
    staged = Mapped(count, layout.width, offsets=True)
    fill = np.arange(0, count, size, dtype=np.int64)  # each bucket's next free staging row

    def stage(block: Mapped, start: int, at: np.ndarray, offsets: np.ndarray) -> None:
        for lo, hi in layout.steps(block.rows):
            # numpy's scatter runs without the GIL: blocks in parallel
            staged.values[at[lo:hi]] = layout.rows(block, start, lo, hi)
        staged.offsets[at] = offsets
        block.close()

    def place(lo: int, hi: int) -> None:
        x[lo:hi][staged.offsets[lo:hi]] = staged.values[lo:hi]
        staged.release(lo, hi)

    threads = read_threads()
    pool = reader_pool()
    jobs: list[Future] = []
    try:
        while blocks:
            block = blocks.pop(0)
            to = position[start:start + block.rows]
            bucket = to // size
            sort = np.argsort(bucket.astype(np.int16 if buckets < 1 << 15 else np.int64),
                              kind="stable")
            counts = np.bincount(bucket, minlength=buckets)
            sorted_bucket = bucket[sort]
            firsts = np.cumsum(counts) - counts  # where each bucket starts among the sorted
            at = np.empty(len(to), dtype=np.int64)
            at[sort] = fill[sorted_bucket] + (np.arange(len(to)) - firsts[sorted_bucket])
            fill += counts
            jobs.append(pool.submit(stage, block, start, at, to - bucket * size))
            start += block.rows
            del block, to, bucket, sort, sorted_bucket, at
            if len(jobs) > threads:  # a block in flight per thread: their copies cost memory
                jobs.pop(0).result()
        while jobs:
            jobs.pop(0).result()
        del position
        jobs = [pool.submit(place, lo, min(count, lo + size)) for lo in range(0, count, size)]
        while jobs:
            jobs.pop(0).result()
    finally:
        finish(jobs)
    staged.close()
    return x
