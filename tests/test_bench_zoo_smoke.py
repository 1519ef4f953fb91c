"""The zoo benchmark imports and runs (one round, one model); its timings are not checked here."""

from __future__ import annotations

import re

import pytest

from benchmarks import bench_zoo
from tests.vision_support import import_torchvision


@pytest.mark.slow
def test_bench_zoo_runs_once():
    import_torchvision()
    rows = bench_zoo.run(rounds=1, models=("convnext_tiny",))
    assert [row["name"] for row in rows] == ["build convnext_tiny", "forward convnext_tiny batch 1"]
    assert all(row["blocks_ms"] > 0 and row["reference_ms"] > 0 for row in rows)
    difference = re.search(r"max \|logit difference\| after import_weights: (\S+);", rows[1]["note"])
    assert difference is not None and float(difference.group(1)) < 1e-4
