"""Turn what users pass to `fit` into batches: tensors, a `Dataset`, or a `DataLoader`.

In-memory tensors are shuffled with one gather per epoch and then sliced into views: no
per-sample `__getitem__` and collate, which is where a naive DataLoader loop spends its time.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from blocks.data.arrays import Split
from blocks.train.distributed import GlobalBatchSampler, shard_bounds
from blocks.train.features import (
    Features,
    device_of,
    is_features,
    n_samples,
    nbytes,
    pinned,
    take,
    to_device,
)

Target = torch.Tensor | dict[str, torch.Tensor]
Batch = tuple[Features, Target]


class TensorBatches:
    """Shuffled, sliced mini-batches of in-memory tensors; the shuffle uses its own generator."""

    def __init__(self, x: Features, y: Target, batch_size: int, *, shuffle: bool,
                 drop_last: bool, generator: torch.Generator,
                 shard: tuple[int, int] | None = None) -> None:
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.generator = generator
        self.shard = shard  # distributed hook: (rank, world_size) -> this rank's share of each batch

    def __len__(self) -> int:
        n = n_samples(self.x)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def samples(self) -> int:
        return n_samples(self.x)

    def __iter__(self) -> Iterator[Batch]:
        if self.shard is not None:
            yield from self._shard_iter()
            return
        x, y = self.x, self.y
        if self.shuffle:
            order = torch.randperm(n_samples(x), generator=self.generator).to(device_of(x))
            x = take(x, order)
            y = {k: v[order] for k, v in y.items()} if isinstance(y, dict) else y[order]
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            stop = start + self.batch_size
            yield take(x, slice(start, stop)), ({k: v[start:stop] for k, v in y.items()} if isinstance(y, dict)
                                  else y[start:stop])

    # --- distributed hook (see blocks.train.distributed) ---------------------------------------
    def _shard_iter(self) -> Iterator[Batch]:
        """The same global batches as `__iter__` (same permutation), cut to this rank's
        contiguous share; a share may be empty (a small last batch, more ranks than samples)."""
        rank, world = self.shard
        order = (torch.randperm(n_samples(self.x), generator=self.generator).to(device_of(self.x))
                 if self.shuffle else None)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            stop = min(start + self.batch_size, n_samples(self.x))
            lo, hi = shard_bounds(stop - start, rank, world)
            index = order[start + lo:start + hi] if order is not None else slice(start + lo, start + hi)
            y = self.y
            yield take(self.x, index), ({k: v[index] for k, v in y.items()} if isinstance(y, dict) else y[index])


def make_batches(data: Any, batch_size: int, *, shuffle: bool, drop_last: bool,
                 generator: torch.Generator, pin_memory: bool = False,
                 shard: tuple[int, int] | None = None,
                 device: torch.device | None = None) -> TensorBatches | DataLoader:
    """`(X, y)`, `(X, {head: y})`, a `Split`, a `Dataset` or a `DataLoader` -> an iterable of batches.

    `shard=(rank, world_size)` (distributed training): `batch_size` is the global batch size and
    each batch holds this rank's share of it; a `DataLoader` is used as given.
    """
    if isinstance(data, DataLoader):
        return data
    if isinstance(data, Split):
        data = data.data()  # tensors, or the Dataset of an image folder
    if isinstance(data, tuple | list) and len(data) == 2 and is_features(data[0]):
        x, y = data
        sizes = {n_samples(x)} | ({len(v) for v in y.values()} if isinstance(y, dict) else {len(y)})
        if len(sizes) != 1:
            raise ValueError(f"features and targets have different numbers of samples: {sorted(sizes)}")
        if device is not None and device.type != "cpu" and _nbytes(x, y) <= DEVICE_RESIDENT_BYTES:
            # small in-memory data lives on the accelerator: no host-to-device copy per batch
            x = to_device(x, device)
            y = {k: v.to(device) for k, v in y.items()} if isinstance(y, dict) else y.to(device)
        elif pin_memory:
            x = pinned(x)
        return TensorBatches(x, y, batch_size, shuffle=shuffle, drop_last=drop_last, generator=generator,
                             shard=shard)
    if isinstance(data, IterableDataset) and callable(getattr(data, "batches", None)):
        # a dataset that batches itself (a table read in chunks, `blocks.data.streaming`): it
        # shuffles through its buffer with this generator and keeps this rank's share
        return data.batches(batch_size, shuffle=shuffle, drop_last=drop_last, generator=generator,
                            shard=shard)
    if isinstance(data, Dataset) and not isinstance(data, IterableDataset) and shard is not None:
        # distributed hook: the same global batches on every rank, this rank's share of each

        sampler = GlobalBatchSampler(len(data), batch_size, shuffle=shuffle, drop_last=drop_last,
                                     generator=generator, shard=shard)
        return DataLoader(data, batch_sampler=sampler, pin_memory=pin_memory)
    if isinstance(data, Dataset):
        return DataLoader(data, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                          generator=generator, pin_memory=pin_memory,
                          num_workers=getattr(data, "num_workers", 0))  # image folders' `workers`
    raise TypeError("training data must be (X, y) tensors, (X, {head: y}), a Dataset or a "
                    f"DataLoader; got {type(data).__name__}")


DEVICE_RESIDENT_BYTES = 1 << 30


def _nbytes(x: Features, y: Target) -> int:
    targets = y.values() if isinstance(y, dict) else [y]
    return nbytes(x) + sum(t.nbytes for t in targets)


def batch_size_of(batch: Batch) -> int:
    x = batch[0]
    return int(x.shape[0]) if isinstance(x, torch.Tensor) else n_samples(x)
