"""Timing shared by the benchmarks: ratios are only fair when both sides see the same machine."""

from __future__ import annotations

import time
from collections.abc import Callable


def interleaved_best(fns: list[Callable[[], object]], rounds: int) -> list[float]:
    """The best wall time of each of `fns` over `rounds` rounds, each round running every fn
    once in turn: a shared machine's slow minute then slows both sides of a ratio alike, where
    timing one side's runs after the other's would put the whole drift into the ratio."""
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best
