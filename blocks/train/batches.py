"""Turn what users pass to `fit` into batches: tensors, a `Dataset`, or a `DataLoader`.

In-memory tensors are shuffled with one gather per epoch and then sliced into views: no
per-sample `__getitem__` and collate, which is where a naive DataLoader loop spends its time.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from blocks.data.splits import Split

Target = torch.Tensor | dict[str, torch.Tensor]
Batch = tuple[torch.Tensor, Target]


class TensorBatches:
    """Shuffled, sliced mini-batches of in-memory tensors; the shuffle uses its own generator."""

    def __init__(self, x: torch.Tensor, y: Target, batch_size: int, *, shuffle: bool,
                 drop_last: bool, generator: torch.Generator) -> None:
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.generator = generator

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def samples(self) -> int:
        return len(self.x)

    def __iter__(self) -> Iterator[Batch]:
        x, y = self.x, self.y
        if self.shuffle:
            order = torch.randperm(len(x), generator=self.generator)
            x = x[order]
            y = {k: v[order] for k, v in y.items()} if isinstance(y, dict) else y[order]
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            stop = start + self.batch_size
            yield x[start:stop], ({k: v[start:stop] for k, v in y.items()} if isinstance(y, dict)
                                  else y[start:stop])


def make_batches(data: Any, batch_size: int, *, shuffle: bool, drop_last: bool,
                 generator: torch.Generator, pin_memory: bool = False) -> TensorBatches | DataLoader:
    """`(X, y)`, `(X, {head: y})`, a `Split`, a `Dataset` or a `DataLoader` -> an iterable of batches."""
    if isinstance(data, DataLoader):
        return data
    if isinstance(data, Split):
        data = data.as_tuple()
    if isinstance(data, tuple | list) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        x, y = data
        sizes = {len(x)} | ({len(v) for v in y.values()} if isinstance(y, dict) else {len(y)})
        if len(sizes) != 1:
            raise ValueError(f"features and targets have different numbers of samples: {sorted(sizes)}")
        if pin_memory:
            x = x.pin_memory()
        return TensorBatches(x, y, batch_size, shuffle=shuffle, drop_last=drop_last, generator=generator)
    if isinstance(data, Dataset):
        return DataLoader(data, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                          generator=generator, pin_memory=pin_memory)
    raise TypeError("training data must be (X, y) tensors, (X, {head: y}), a Dataset or a "
                    f"DataLoader; got {type(data).__name__}")


def batch_size_of(batch: Batch) -> int:
    return int(batch[0].shape[0])
