"""The benchmarks import and run (one tiny iteration); their numbers are not checked here."""

from __future__ import annotations

from benchmarks import bench_build
from benchmarks.__main__ import discover, format_table, status


def test_bench_build_runs_once():
    rows = bench_build.run(rounds=1, min_run_time=0.002, cases=("tiny-mlp",))
    assert [row["name"] for row in rows] == [
        "build tiny-mlp (validated spec)", "build tiny-mlp (from dict)", "forward tiny-mlp batch 256",
        "input check tiny-mlp"]
    for row in rows:
        assert {"name", "blocks_ms", "reference_ms", "ratio", "target"} <= set(row)
        assert row["blocks_ms"] > 0 and row["reference_ms"] > 0
    table = format_table(rows)
    assert "forward tiny-mlp batch 256" in table and "us per call" in table
    assert status(rows[1]) == "info"


def test_discover_finds_bench_modules():
    names = discover()
    assert "bench_build" in names
    assert all(name.startswith("bench_") for name in names)
