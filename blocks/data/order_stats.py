"""Exact medians of float32 columns in bounded memory, over repeated passes of a stream of
chunks (`data.stream` with `impute: median`, issue 21).

A median is an order statistic, and the order of float32 values is the order of their bit
patterns once mapped to unsigned keys (`_keys`), so it can be found digit by digit (radix
selection): each pass histograms the next few bits of the keys that share the digits found so
far, and the digit holding the wanted rank is kept. Two to four passes find every bit, holding
a histogram per column and not one value: the answer is the in-memory fit's
(`torch.quantile(column, 0.5)`), bit for bit, whatever the rows.
"""

from __future__ import annotations

import numpy as np
import torch

#: what the histograms of one pass may hold: 2 ranks x columns x 2**bits int64 counts
HISTOGRAM_BYTES = 32 << 20
MAX_BITS = 16


def _keys(values: np.ndarray) -> np.ndarray:
    """Unsigned keys in the order of the float32 values (-0.0 taken as 0.0, as sorting does)."""
    bits = (values.astype(np.float32) + np.float32(0.0)).view(np.uint32)
    negative = (bits >> np.uint32(31)).astype(bool)
    return np.where(negative, ~bits, bits | np.uint32(1 << 31))


def _values(keys: np.ndarray) -> np.ndarray:
    """The float32 values of keys made by `_keys`."""
    keys = keys.astype(np.uint32)
    positive = (keys >> np.uint32(31)).astype(bool)
    return np.where(positive, keys & np.uint32(0x7FFFFFFF), ~keys).view(np.float32)


class StreamedMedian:
    """The medians of `columns` float32 columns (NaN: missing, skipped), fed chunk by chunk in
    as many passes over the same rows as `passes`:

        median = StreamedMedian(columns)
        while True:
            for chunk in rows(): median.add(chunk)
            if not median.next_pass(): break
        median.medians()
    """

    def __init__(self, columns: int, histogram_bytes: int = HISTOGRAM_BYTES) -> None:
        self.columns = columns
        per_bit = 2 * max(1, columns) * 8  # two ranks (the middle pair), int64 counts
        self.bits = int(max(1, min(MAX_BITS, np.log2(max(2, histogram_bytes // per_bit)))))
        self.passes = -(-32 // self.bits)
        self.done = 0  # key bits found so far (from the top)
        self.counts = np.zeros(columns, dtype=np.int64)  # values per column (pass 1)
        self.prefix = np.zeros((2, columns), dtype=np.uint64)  # the bits found, per rank
        self.rank = np.zeros((2, columns), dtype=np.int64)  # the rank among those keys
        self._width = min(self.bits, 32 - self.done)
        self._histogram = np.zeros(2 * columns << self._width, dtype=np.int64)

    def add(self, chunk: np.ndarray) -> None:
        """Count a chunk's values (rows x columns) in this pass's histograms."""
        if len(chunk) == 0:
            return
        present = ~np.isnan(chunk)
        keys = _keys(np.where(present, chunk, 0))
        digit = (keys >> np.uint32(32 - self.done - self._width)) & np.uint32(
            (1 << self._width) - 1)
        base = np.arange(self.columns, dtype=np.int64) << self._width
        for which in (0, 1):
            if which and self.done == 0:
                break  # the first pass counts every value once: both ranks read it
            keep = present
            if self.done:
                high = keys >> np.uint32(32 - self.done)
                keep = present & (high == self.prefix[which].astype(np.uint32))
            slot = digit + (base + (which * self.columns << self._width))
            self._histogram += np.bincount(slot[keep], minlength=len(self._histogram))

    def next_pass(self) -> bool:
        """Close a pass: keep each rank's digit. True while more passes are needed."""
        width = self._width
        histogram = self._histogram.reshape(2, self.columns, 1 << width)
        if self.done == 0:
            histogram[1] = histogram[0]
            self.counts = histogram[0].sum(axis=1)
            middle = np.maximum(self.counts - 1, 0)
            self.rank = np.stack([middle // 2, middle - middle // 2])  # floor, ceil of (n-1)/2
        running = np.cumsum(histogram, axis=2)
        digit = (running <= self.rank[:, :, None]).sum(axis=2)  # the first bin past the rank
        below = np.take_along_axis(running, np.maximum(digit - 1, 0)[:, :, None], 2)[:, :, 0]
        self.rank = self.rank - np.where(digit > 0, below, 0)
        self.prefix = (self.prefix << np.uint64(width)) | np.minimum(
            digit, (1 << width) - 1).astype(np.uint64)
        self.done += width
        if self.done >= 32:
            self._histogram = np.zeros(0, dtype=np.int64)
            return False
        self._width = min(self.bits, 32 - self.done)
        self._histogram = np.zeros(2 * self.columns << self._width, dtype=np.int64)
        return True

    def medians(self) -> np.ndarray:
        """float64 medians, as `torch.quantile(column, 0.5)` gives them (NaN for a column
        without values: the caller names it)."""
        if self.done < 32:
            raise RuntimeError("StreamedMedian.medians before its last pass")
        pair = _values(self.prefix).astype(np.float64)  # the middle pair of each column
        between = torch.quantile(torch.from_numpy(pair.T.copy()), 0.5, dim=1).numpy()
        out = np.where(pair[0] == pair[1], pair[0], between)  # an odd count: the middle value
        return np.where(self.counts > 0, out, np.nan)
