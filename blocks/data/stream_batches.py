"""Mini-batches of a streamed table (`blocks.data.streaming.StreamedTable`): chunks through a
shuffle buffer drawn with the trainer's generator, and the two ways of sharing a stream under
DDP (each rank reading its own Parquet shards, or every rank reading the table and keeping its
share of each global batch)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from blocks.data.streaming import StreamedTable


#: the fewest rows a rank's local batch may hold when it reads its own shards
MIN_LOCAL_ROWS = 2


class StreamBatches:
    """Mini-batches of a `StreamedTable` through a shuffle buffer drawn with the trainer's
    generator; a buffer holding the whole split gives the in-memory run's batches."""

    def __init__(self, table: StreamedTable, batch_size: int, shuffle: bool, drop_last: bool,
                 generator: torch.Generator, shard: tuple[int, int] | None) -> None:
        self.table, self.batch_size, self.shuffle = table, batch_size, shuffle
        self.drop_last, self.generator, self.shard = drop_last, generator, shard

    def __len__(self) -> int:
        n = len(self.table)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, Any]]:
        table = self.table
        own = table.shard_files(*self.shard) if self.shard is not None else None
        if own is not None and self._even_enough():
            yield from self._own_shards(own)
            return
        if len(table) <= table.buffer:
            yield from self._whole()
            return
        pending_x: list[torch.Tensor] = []
        pending_y: list[Any] = []
        held = 0
        for rows in self._rows():
            x, y = rows
            pending_x.append(x)
            pending_y.append(y)
            held += len(x)
            while held >= self.batch_size:
                bx, by, pending_x, pending_y = _take(pending_x, pending_y, self.batch_size)
                held -= self.batch_size
                yield self._share(bx, by)
        if held and not self.drop_last:
            bx, by, _, _ = _take(pending_x, pending_y, held)
            yield self._share(bx, by)

    def _even_enough(self) -> bool:
        """Whether every rank's own shards give it `MIN_LOCAL_ROWS` rows a step at least: a
        rank whose shards hold next to nothing would step on empty or one-row batches (which
        a BatchNorm refuses in training), so then every rank reads the whole table and takes
        its share of each batch instead. The same answer on every rank (Parquet footers)."""
        _, world = self.shard
        return all(self._local_rows(self.table.shard_files(other, world) or [])
                   >= MIN_LOCAL_ROWS * len(self) for other in range(world))

    def _local_rows(self, shards: list[int]) -> int:
        """The rows a rank reading `shards` takes in an epoch: with `drop_last`, its share of
        the rows the single process keeps (it drops `len % batch_size`)."""
        mine = self.table.rows_in(shards)
        if self.drop_last:
            mine = mine * len(self) * self.batch_size // max(1, len(self.table))
        return mine

    def _own_shards(self, shards: list[int]) -> Iterator[tuple[torch.Tensor, Any]]:
        """DDP over a folder of shards: this rank reads its own shards only, through its
        buffer, and spreads its rows over the epoch's `len(self)` steps (every rank steps as
        often; the ranks' rows together are the split, each row once; the losses' all-reduced
        normalisers make each step's gradient the mean over the rows of all ranks)."""
        table = self.table
        steps = len(self)
        if steps == 0:
            return
        mine = self._local_rows(shards)
        bounds = [mine * s // steps for s in range(steps + 1)]
        empty = table.prepare(np.empty((0, len(table.features)), np.float32),
                              np.empty((0, len(table.targets))))
        pending_x: list[torch.Tensor] = [empty[0]]
        pending_y: list[Any] = [empty[1]]
        held = 0
        rows = self._rows(shards)
        for step in range(steps):
            want = bounds[step + 1] - bounds[step]
            while held < want:
                x, y = next(rows)
                pending_x.append(x)
                pending_y.append(y)
                held += len(x)
            bx, by, pending_x, pending_y = _take(pending_x, pending_y, want)
            held -= want
            yield bx, by

    def _rows(self, shards: list[int] | None = None) -> Iterator[tuple[torch.Tensor, Any]]:
        """Rows in buffer order: file order when not shuffling, else drawn from a buffer."""
        table = self.table
        if not self.shuffle:
            for x, y, _ in table.chunks(shards):
                yield table.prepare(x, y)
            return
        buffer_x: torch.Tensor | None = None
        buffer_y: Any = None
        for x, y, _ in table.chunks(shards):
            xs, ys = table.prepare(x, y)
            buffer_x = xs if buffer_x is None else torch.cat([buffer_x, xs])
            buffer_y = ys if buffer_y is None else _cat_all([buffer_y, ys])
            while len(buffer_x) > table.buffer:  # draw the overflow at random
                spill = len(buffer_x) - table.buffer
                order = torch.randperm(len(buffer_x), generator=self.generator)
                out, kept = order[:spill], order[spill:]
                yield buffer_x[out], _index(buffer_y, out)
                buffer_x, buffer_y = buffer_x[kept], _index(buffer_y, kept)
        if buffer_x is not None and len(buffer_x):
            order = torch.randperm(len(buffer_x), generator=self.generator)
            yield buffer_x[order], _index(buffer_y, order)

    def _whole(self) -> Iterator[tuple[torch.Tensor, Any]]:
        """The split fits the buffer: gathered in the in-memory split's order, then shuffled
        and sliced as the trainer does tensors (`blocks.train.batches.TensorBatches`: one
        `randperm` of its generator per epoch), so the batches are the in-memory run's."""
        table = self.table
        parts_x, parts_y, parts_i = [], [], []
        for x, y, index in table.chunks():
            parts_x.append(x)
            parts_y.append(y)
            parts_i.append(index)
        x, y, index = np.concatenate(parts_x), np.concatenate(parts_y), np.concatenate(parts_i)
        order = np.random.default_rng(table.seed).permutation(len(table.mask))
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        arranged = np.argsort(rank[index], kind="stable")  # the in-memory split's row order
        xs, ys = table.prepare(x[arranged], y[arranged])
        if self.shuffle:
            shuffled = torch.randperm(len(xs), generator=self.generator)
            xs, ys = xs[shuffled], _index(ys, shuffled)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            stop = start + self.batch_size
            yield self._share(xs[start:stop], _index(ys, slice(start, stop)))

    def _share(self, x: torch.Tensor, y: Any) -> tuple[torch.Tensor, Any]:
        """This rank's contiguous share of a global batch (as `TensorBatches` shards)."""
        if self.shard is None:
            return x, y
        rank, world = self.shard
        base, extra = divmod(len(x), world)
        lo = rank * base + min(rank, extra)
        hi = lo + base + (1 if rank < extra else 0)
        return x[lo:hi], _index(y, slice(lo, hi))


def _index(y: Any, index: Any) -> Any:
    return {k: v[index] for k, v in y.items()} if isinstance(y, dict) else y[index]


def _take(xs: list, ys: list, count: int) -> tuple:
    x = torch.cat(xs) if len(xs) > 1 else xs[0]
    y = ys[0] if len(ys) == 1 else _cat_all(ys)
    return x[:count], _index(y, slice(0, count)), [x[count:]], [_index(y, slice(count, None))]


def _cat_all(ys: list) -> Any:
    if isinstance(ys[0], dict):
        return {k: torch.cat([y[k] for y in ys]) for k in ys[0]}
    return torch.cat(ys)
