"""A training Parquet file (or folder of shards) read a row group and a column at a time into
compact row blocks (`blocks.data.row_blocks`), so an in-memory load peaks near the float32 feature matrix,
not the decoded table and its float64 copies (issue 21).

Only plainly regular tables take this road: numeric feature columns of integer, float or
boolean type without a null, NaN or infinity, and every other column (categories, targets)
text or integer. Anything else is read whole (`read_columnar` + `typed_cells`), which names the
bad row, imputes missing cells, or refuses what it cannot take.
"""

from __future__ import annotations

import threading
from concurrent.futures import wait
from pathlib import Path
from typing import Any

import numpy as np

from blocks.data.columnar import ARROW_SUFFIXES, parquet_files
from blocks.data.limits import check_columns
from blocks.data.row_blocks import BlockCells, Mapped, finish, memory_pool, reader_pool

BLOCK_ROWS = 1 << 15  # rows per float32 block


def read_parquet_blocks(path: Path, where: str, numeric: Any) -> BlockCells | None:
    """`BlockCells` of the Parquet file or shards at `path` (`numeric(header)`: the columns
    expected to hold numbers), or None when the table is not plain (the whole-table reader
    decides)."""
    import pyarrow as pa  # optional: the `tables` extra
    import pyarrow.parquet as pq  # optional: the `tables` extra

    if path.suffix.lower() in ARROW_SUFFIXES:
        return None
    files = parquet_files(path, where)
    try:
        handles = [pq.ParquetFile(f, pre_buffer=False, buffer_size=1 << 20) for f in files]
    except (OSError, pa.ArrowException):
        return None  # the whole-table reader names the file it cannot read
    header = list(handles[0].schema_arrow.names)
    check_columns(len(header), where, path)
    if len(set(header)) != len(header) or any(h.schema_arrow != handles[0].schema_arrow
                                              for h in handles):
        return None
    wanted = numeric(header)
    schema = handles[0].schema_arrow
    numbers = [name for name in header if name in wanted]
    others = [name for name in header if name not in wanted]
    if not numbers or not all(_is_number(schema.field(n).type) for n in numbers) or not all(
            _is_label(schema.field(n).type) for n in others):
        return None
    pool = memory_pool()
    blocks: list[Mapped] = []
    encoded: dict[str, list] = {name: [] for name in others}
    count = 0
    local = threading.local()  # a ParquetFile per thread and file: reads run side by side

    def column(file: Path, group: int, name: str) -> Any:
        opened = local.__dict__.setdefault("files", {})
        if file not in opened:
            opened[file] = pq.ParquetFile(file, pre_buffer=False, buffer_size=1 << 20)
        return opened[file].read_row_group(group, columns=[name]).column(0).combine_chunks()

    threads = reader_pool()
    jobs: list = []
    try:
        for file, handle in zip(files, handles, strict=True):
            for group in range(handle.metadata.num_row_groups):
                rows = handle.metadata.row_group(group).num_rows
                # stored by column: each column job writes its values in one sweep
                group_blocks = [Mapped(min(BLOCK_ROWS, rows - start), len(numbers),
                                       by_column=True) for start in range(0, rows, BLOCK_ROWS)]
                blocks += group_blocks
                plain = [threads.submit(lambda k, f=file, g=group, b=group_blocks, n=rows:
                                        _fill(b, k, column(f, g, numbers[k]), n), k)
                         for k in range(len(numbers))]
                texts = [threads.submit(lambda name, f=file, g=group: _encoded(column(f, g, name),
                                                                               pool), name)
                         for name in others]
                jobs = plain + texts
                wait(jobs)  # every job done (or failed) before a block may be let go
                plain, texts = [job.result() for job in plain], [job.result() for job in texts]
                if not all(plain) or any(text is None for text in texts):
                    for done in blocks:
                        done.close()
                    return None
                for block in group_blocks:
                    block.rows = len(block.values)
                for name, text in zip(others, texts, strict=True):
                    encoded[name].append(text)
                count += rows
                del texts
                pool.release_unused()
                pa.default_memory_pool().release_unused()
    except (OSError, pa.ArrowException):
        for done in blocks:
            done.close()
        return None
    finally:
        finish(jobs)
    return BlockCells(header, numbers, blocks, encoded, count, range(1, count + 1), unit="row")


def _is_number(kind: Any) -> bool:
    import pyarrow as pa  # optional: the `tables` extra

    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)


def _is_label(kind: Any) -> bool:
    """Text (plain or dictionary-encoded) or integers: what a category or target column holds."""
    import pyarrow as pa  # optional: the `tables` extra

    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)


def _fill(blocks: list[Mapped], k: int, column: Any, rows: int) -> bool:
    """Column `k` of a row group's float32 blocks (`BLOCK_ROWS` rows each: the matrix is
    written, and each block let go, in small steps), converted as the whole-table decoder
    converts it (`cast(float64, safe=False)`, then float32); False when the column holds a
    missing (null or NaN) or infinite value. Runs on a reader thread."""
    import pyarrow as pa  # optional: the `tables` extra
    import pyarrow.compute as pc  # optional: the `tables` extra

    if not pa.types.is_float64(column.type):
        column = pc.cast(column, pa.float64(), safe=False)
    values = column.to_numpy(zero_copy_only=False)
    if column.null_count or len(values) != rows or not np.isfinite(values).all():
        return False
    for i, block in enumerate(blocks):
        block.values[:, k] = values[i * BLOCK_ROWS:(i + 1) * BLOCK_ROWS]
    del column, values
    pa.default_memory_pool().release_unused()  # the column's pages, kept by mimalloc
    return True


def _encoded(column: Any, pool: Any) -> Any:
    """A category or target column of one row group, dictionary-encoded on its plain values
    (text as `string`), so the decoder sees the values the whole-table reader would; None when
    it has a null. Runs on a reader thread, which gives the column's pages back itself (each
    thread's freed memory stays with that thread's heap until it does)."""
    import pyarrow as pa  # optional: the `tables` extra
    import pyarrow.compute as pc  # optional: the `tables` extra

    if column.null_count:
        return None
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_large_string(column.type):
        column = column.cast(pa.string())
    encoded = pc.dictionary_encode(column, memory_pool=pool)
    del column
    pa.default_memory_pool().release_unused()
    return encoded
