"""bench_speed's cheap parts run (tiny sizes); numbers are not checked here, only their shape."""

from __future__ import annotations

from benchmarks import bench_speed


def test_forward_and_nesting_rows_run_once():
    rows = bench_speed.forward_rows(rounds=1, calls=5) + bench_speed.nesting_rows((2, 4))
    assert [row["name"] for row in rows] == [
        "forward 30-64-1 batch 64 vs flat nn.Sequential", "shape inference 2 nested residuals",
        "shape inference 4 nested residuals"]
    for row in rows:
        assert row["blocks_ms"] > 0 and row["reference_ms"] > 0 and row["target"] is not None
