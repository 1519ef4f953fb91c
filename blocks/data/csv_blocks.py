"""A training CSV read in pieces, in parallel, into compact row blocks (issue 21).

The file is cut at line ends into pieces of a few MB; each piece is parsed by pyarrow's typed
reader on a worker thread (pyarrow releases the GIL), its numeric columns turned into a float32
row block (exactly what decoding makes of them: `float64.astype(float32)`) and its text columns
dictionary-encoded there too, so parsing runs on every core while the parsed table never
exists whole (`blocks.data.row_blocks`). A cut inside a quoted cell is caught (that cell
would end the piece holding its line end) and sends the file back to the whole-table readers,
as does any cell that is not a plain finite number: those readers name bad cells by file line.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from blocks.data.columnar import (
    Cells,
    LineIndex,
    _Shifted,
    csv_engine,
    first_record,
    read_csv_cells,
)
from blocks.data.limits import max_line_bytes, read_threads
from blocks.data.row_blocks import (
    BlockCells,
    Mapped,
    finish,
    memory_pool,
    reader_pool,
)
from blocks.data.table import MISSING

# the text one worker parses at a time: pyarrow's fixed cost per call (about 0.3 ms) makes
# pieces under 1 MB parse slower per byte; past 2 MB they are no faster and hold more memory
PIECE_BYTES = 2 << 20
MIN_PIECE_BYTES = 1 << 20
# a reader thread gives its freed parse buffers back to the system every few pieces: each
# time costs about 0.5 ms of page faults and unmaps on both cores (13 ms of a 200k-row load
# when done after every piece), for the same peak (measured: 1.54x the matrix either way)
RELEASE_EVERY = 4
_parsed = threading.local()  # pieces parsed by this reader thread


def read_training_csv(path: Path, where: str, delimiter: str,
                      numeric: Callable[[list[str]], set[str]], *, missing_ok: bool = False
                      ) -> Cells:
    """A training CSV's cells: `BlockCells` when the `numeric(header)` columns all hold plain
    finite numbers (or, with `missing_ok`, missing cells spelled exactly as `MISSING`), else
    what `read_csv_cells` reads (the same numbers, or a located error)."""
    if csv_engine() == "arrow":
        header = first_record(path, where, delimiter)
        if header and len(set(header)) == len(header):
            cells = read_blocks(path, header, numeric(header), delimiter, missing_ok=missing_ok)
            if cells is not None:
                return cells
    return read_csv_cells(path, where, delimiter, numeric=numeric)


class _NotPlain(Exception):
    """A piece the typed reader does not take as it is (the whole-table readers decide)."""


def read_blocks(path: Path, header: list[str], numeric: set[str], delimiter: str, *,
                missing_ok: bool = False) -> Any:
    """`BlockCells` of the file, or None when it is not plain (see the module docstring).
    `missing_ok`: a numeric cell spelled as one of `MISSING` (exactly, unquoted) is a missing
    value, NaN, as the decoder makes it."""
    import pyarrow as pa  # optional: the `tables` extra

    if not numeric & set(header):
        return None
    numbers = [name for name in header if name in numeric]
    others = [name for name in header if name not in numeric]
    piece = int(min(PIECE_BYTES, max(MIN_PIECE_BYTES, path.stat().st_size // 32)))
    blocks: list[Mapped] = []
    encoded: dict[str, list] = {name: [] for name in others}
    count = 0
    pool = reader_pool()
    pending: deque = deque()

    def collect(result: Any) -> None:
        nonlocal count
        if result is not None:
            block, texts = result
            blocks.append(block)
            for name, chunk in texts.items():
                encoded[name].append(chunk)
            count += block.rows

    spare: list[bytearray] = []  # buffers whose piece is parsed: the next pieces reuse them

    def collect_oldest() -> None:
        job, buffer = pending.popleft()
        collect(job.result())
        spare.append(buffer)  # the parsed table kept nothing of it (its columns are copies)

    try:
        with open(path, "rb") as handle:
            for i, (buffer, data) in enumerate(_pieces(handle, piece, spare)):
                pending.append((pool.submit(_parse, data, i == 0, header, numbers, others,
                                            delimiter, missing_ok), buffer))
                del data, buffer
                # one piece more than threads in flight: a reader never waits for the next
                while len(pending) > read_threads() + 1:
                    collect_oldest()
            while pending:
                collect_oldest()
    except (_NotPlain, pa.ArrowInvalid, pa.ArrowNotImplementedError):
        for block in blocks:
            block.close()
        return None
    finally:
        finish([job for job, _ in pending])
    return BlockCells(header, numbers, blocks, encoded, count,
                      _Shifted(LineIndex(path, delimiter, count + 1), 1))


def _pieces(handle: Any, size: int, spare: list[bytearray]
            ) -> Iterator[tuple[bytearray, memoryview]]:
    """The file's bytes in pieces of about `size`, each ending at a line end (`\\n`): (buffer,
    the piece in it), read into a buffer from `spare` (given back by the caller once parsed)
    or a new one, so a worker parses a piece while the next is read, without further copies
    and without fresh pages for each piece."""
    rest = b""
    limit = max_line_bytes()
    while True:
        buffer = spare.pop() if spare else bytearray(0)
        if len(buffer) < len(rest) + size:  # room for the longer partial lines to come too
            buffer = bytearray(max(len(rest), 1 << 16) + size)
        buffer[:len(rest)] = rest
        read = handle.readinto(memoryview(buffer)[len(rest):len(rest) + size])
        end = len(rest) + read
        if not read:
            if rest:
                yield buffer, memoryview(buffer)[:end]
            return
        cut = buffer.rfind(b"\n", 0, end)
        if cut < 0:
            if end > limit:
                raise _NotPlain  # the whole-table readers name the line that is too long
            rest = bytes(buffer[:end])
            continue
        rest = bytes(buffer[cut + 1:end])
        yield buffer, memoryview(buffer)[:cut + 1]


def _parse(data: memoryview, first: bool, header: list[str], numbers: list[str], others: list[str],
           delimiter: str, missing_ok: bool) -> Any:
    """One piece: (float32 row block of the numeric columns, dictionary-encoded text columns),
    or None for a piece without rows. Runs on a worker thread."""
    import pyarrow as pa  # optional: the `tables` extra
    import pyarrow.csv as pcsv  # optional: the `tables` extra

    # text columns come dictionary-encoded straight from the parser (no string column first)
    types = {name: pa.float64() for name in numbers} | {
        name: pa.dictionary(pa.int32(), pa.string()) for name in others}
    pool = memory_pool()
    table = pcsv.read_csv(
        pa.BufferReader(pa.py_buffer(data)),
        read_options=pcsv.ReadOptions(use_threads=False, block_size=len(data) + 1,
                                      column_names=None if first else header),
        parse_options=pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
        convert_options=pcsv.ConvertOptions(
            column_types=types, strings_can_be_null=False, quoted_strings_can_be_null=False,
            null_values=sorted(MISSING) if missing_ok else [], true_values=["\x00true"],
            false_values=["\x00false"]),
        memory_pool=pool)
    del data
    if first and table.column_names != header:
        raise _NotPlain
    rows = table.num_rows
    if rows == 0:
        return None
    for name in others:  # a cut inside a quoted cell leaves the cut's line end in that cell
        if table.column(name)[rows - 1].as_py().endswith(("\n", "\r")):
            raise _NotPlain
    columns = [table.column(name) for name in others + numbers]
    if any(column.num_chunks != 1 for column in columns):
        raise _NotPlain
    chunks = [column.chunk(0) for column in columns]
    texts = dict(zip(others, chunks[:len(others)], strict=True))
    columns = chunks[len(others):]
    block = Mapped(rows, len(numbers))
    values = block.values
    for k, column in enumerate(columns):  # the decoder's float64 `.astype(float32)`, in place
        values[:, k] = _float64_view(column)
    missing = {k: column.is_null().to_numpy(zero_copy_only=False)
               for k, column in enumerate(columns) if column.null_count}  # a `MISSING` cell
    for k, mask in missing.items():
        values[mask, k] = 0.0
    # 'inf', '-nan' (and a float64 beyond float32's range): the text path names the cell
    finite = bool(np.isfinite(values.sum(dtype=np.float64)))  # no NaN, no inf (no overflow:
    # float32 values summed in float64), without a mask the size of the block
    for k, mask in missing.items():
        values[mask, k] = np.nan  # the decoder's missing value
    del values, columns, chunks, table
    if not finite:
        block.close()
        raise _NotPlain
    block.rows = rows
    _parsed.count = getattr(_parsed, "count", 0) + 1
    if _parsed.count % RELEASE_EVERY == 0:
        pool.release_unused()  # this thread's freed parse buffers go back to the system now
    return block, texts


def _float64_view(column: Any) -> np.ndarray:
    """A float64 column's values as a numpy view of its buffer (a null's slot holds anything)."""
    if column.buffers()[1] is None:  # every cell missing
        return np.zeros(len(column))
    return np.frombuffer(column.buffers()[1], dtype=np.float64, count=len(column),
                         offset=column.offset * 8)


