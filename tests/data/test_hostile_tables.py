"""Hostile tables are refused fast, before the expensive work, with a message naming the
limit and how to raise it (issue 21, item 4): each exits 2 within 5 s."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

RECIPE = """model:
  input: {shape: [%d]}
  head: {type: softmax, classes: 2}
data: {csv: {path: t.csv, target: y%s}}
"""


def validate(tmp_path, width: int, extra: str = "", env: dict | None = None):
    (tmp_path / "r.yaml").write_text(RECIPE % (width, extra))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-m", "blocks", "validate", str(tmp_path / "r.yaml")],
                          capture_output=True, text=True, timeout=60,
                          env={**__import__("os").environ, **(env or {})})
    done.stderr = done.stdout + done.stderr  # validate lists problems on stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds (user + system) of the command: a loaded machine does not inflate them
    return done, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def test_a_hundred_thousand_columns_are_refused_at_once(tmp_path):
    columns = 100_000
    header = ",".join(f"c{i}" for i in range(columns)) + ",y\n"
    row = ",".join("1" for _ in range(columns)) + ",0\n"
    (tmp_path / "t.csv").write_text(header + row * 20)
    done, took = validate(tmp_path, columns)
    assert done.returncode == 2, done.stderr
    assert "t.csv has 100,001 columns, more than the limit of 20,000; set BLOCKS_MAX_COLUMNS" \
        in done.stderr
    assert "Traceback" not in done.stderr
    assert took < 5


def test_a_file_without_a_line_end_is_not_read_whole(tmp_path):
    path = tmp_path / "t.csv"
    with open(path, "wb") as handle:  # 2 GB of one line (sparse: no disk, no newline)
        handle.truncate(2 * 10**9)
    done, took = validate(tmp_path, 2, env={"BLOCKS_MAX_MODEL_BYTES": str(10**12)})
    assert done.returncode == 2, done.stderr
    assert ("line 1 is longer than the limit of 16,777,216 bytes (no line end found); set "
            "BLOCKS_MAX_LINE_BYTES" in done.stderr) or "memory" in done.stderr
    assert took < 5


def test_a_line_limit_is_named_with_its_variable(tmp_path):
    (tmp_path / "t.csv").write_text("a" * 5000)
    done, _ = validate(tmp_path, 2, env={"BLOCKS_MAX_LINE_BYTES": "1000"})
    assert done.returncode == 2
    assert "t.csv line 1 is longer than the limit of 1,000 bytes" in done.stderr


@pytest.mark.parametrize("reader", ["arrow", "python"])
def test_a_million_categories_are_refused_before_encoding(tmp_path, reader):
    rows = 300_000 if reader == "arrow" else 200_000  # the 10^6: docs/data.md
    with open(tmp_path / "t.csv", "w") as handle:
        handle.write("a,y\n")
        handle.writelines(f"k{i},{i % 2}\n" for i in range(rows))
    env = {"BLOCKS_CSV_READER": reader}
    if reader == "python":
        env["BLOCKS_MAX_CATEGORIES"] = "1000"
    done, took = validate(tmp_path, 4, ", categorical: [a]", env=env)
    assert done.returncode == 2, done.stderr
    limit = "100,000" if reader == "arrow" else "1,000"
    assert (f"t.csv: column 'a' has {rows:,} distinct values, more than the limit of {limit} "
            "categories; set BLOCKS_MAX_CATEGORIES to raise it") in done.stderr
    assert took < 5
