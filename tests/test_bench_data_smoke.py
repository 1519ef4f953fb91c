"""`bench_data` runs end to end on a tiny table (its numbers are not checked here)."""

from __future__ import annotations

import pytest

pytest.importorskip("pyarrow")
pytest.importorskip("pandas")


@pytest.mark.slow
def test_bench_data_runs_on_a_small_table():
    from benchmarks import bench_data

    rows = bench_data.run(sizes=(3_000,))
    assert [row["name"].split(" (")[0] for row in rows] == [
        "data load 3k rows", "predict 3k rows end to end", "peak memory of the load, 3k rows",
        "data load 3k rows, Parquet", "peak memory of the load, 3k rows, Parquet",
        "data load 3k rows, Parquet, 10% missing",
        "peak memory of the load, 3k rows, Parquet, 10% missing"]
    assert all(row["blocks_ms"] >= 0 and row["reference_ms"] > 0 for row in rows)
