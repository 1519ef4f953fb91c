"""bench_serve runs end to end (two servers, tiny durations); its numbers are not checked here."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
from benchmarks import bench_serve  # noqa: E402


@pytest.mark.multiprocess
@pytest.mark.slow
def test_bench_serve_runs_once():
    rows = bench_serve.measure(seconds=0.3, rounds=1, concurrency=(1, 4))
    assert [row["name"] for row in rows] == ["serve 1 client, 1 row/request",
                                             "serve 4 clients, 1 row/request"]
    for row in rows:
        assert row["blocks_ms"] > 0 and row["reference_ms"] > 0
        assert "req/s" in row["note"] and "p99" in row["note"]
