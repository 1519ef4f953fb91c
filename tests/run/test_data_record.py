"""Portable run folders (issue 24 item 4): a relative data path is stored relative to the run
folder, run.json records the data's size and SHA-256, and `blocks evaluate RUN_DIR` (no DATA)
follows the path for the user who trained the run, but not to other bytes."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import blocks

RECIPE = """\
model:
  input: {shape: [2]}
  backbone: [{type: linear, out_features: 8}, relu]
  head: {type: softmax, classes: 2}
data: {csv: {path: ../data/table.csv, target: y}, val_fraction: 0.25}
train: {epochs: 2, batch_size: 8}
"""


def evaluate(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "blocks", "evaluate", *argv, "--json"],
                          capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.fixture
def project(tmp_path) -> Path:
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    (root / "recipes").mkdir()
    (root / "data" / "table.csv").write_text(
        "a,b,y\n" + "".join(f"{i % 5},{(i * 7) % 3},{i % 2}\n" for i in range(40)))
    (root / "recipes" / "r.yaml").write_text(RECIPE)
    blocks.run_recipe(root / "recipes" / "r.yaml", root / "runs" / "r", plots=False)
    return root


@pytest.mark.slow
def test_evaluate_without_data_follows_the_recorded_data_only(project, tmp_path):
    run = project / "runs" / "r"
    table = project / "data" / "table.csv"
    assert blocks.load_recipe(run / "recipe.yaml").data.csv.path == "../../data/table.csv"
    record = json.loads((run / "run.json").read_text())["data"]
    assert record == {"csv": {"path": "../../data/table.csv", "bytes": table.stat().st_size,
                              "sha256": hashlib.sha256(table.read_bytes()).hexdigest()}}

    done = evaluate("runs/r", cwd=project)
    assert done.returncode == 0 and done.stderr == ""
    cli = json.loads(done.stdout)
    python = subprocess.run([sys.executable, "-c", "import json, blocks; "
                             "print(json.dumps(blocks.evaluate_run('runs/r')))"],
                            capture_output=True, text=True, cwd=project, timeout=120)
    assert json.loads(python.stdout) == cli
    final = json.loads((run / "run.json").read_text())["final"]
    assert cli["val/accuracy"] == pytest.approx(final["val/accuracy"])

    moved = tmp_path / "moved"  # the project copied elsewhere, runs and data together
    shutil.copytree(project, moved)
    done = evaluate("runs/r", cwd=moved)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == cli

    table.write_text(table.read_text().replace("0,0,0", "0,0,1", 1))  # same size, other bytes
    done = evaluate("runs/r", cwd=project)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr == (
        f"error: {Path('runs/r/recipe.yaml')}: data.csv.path: the run's recipe reads its data from "
        "../../data/table.csv, outside the run folder, and what is there no longer has the size "
        "and checksum recorded when the run was trained (changed or replaced since); blocks "
        "follows a path stored in a run folder only to the data the run was trained on: name "
        "the data (`blocks evaluate RUN_DIR DATA`) or pass --trust-paths\n")
    assert evaluate("runs/r", "--trust-paths", cwd=project).returncode == 0


@pytest.mark.slow
def test_an_old_run_folder_loads_and_needs_trust_paths_as_before(project):
    run = project / "runs" / "r"
    # as blocks wrote it before: an absolute data path and no data record
    text = (run / "recipe.yaml").read_text()
    (run / "recipe.yaml").write_text(text.replace(
        "path: ../../data/table.csv", f"path: {(project / 'data' / 'table.csv').resolve()}"))
    info = json.loads((run / "run.json").read_text())
    del info["data"]
    (run / "run.json").write_text(json.dumps(info))
    blocks.load(run)
    done = evaluate("runs/r", cwd=project)
    assert done.returncode == 2
    assert "outside the run folder, and the run folder records no size and checksum" in done.stderr
    done = evaluate("runs/r", "--trust-paths", cwd=project)
    assert done.returncode == 0, done.stderr
    assert set(json.loads(done.stdout)) == {"val/loss", "val/accuracy"}


@pytest.mark.parametrize("entry", [
    {"path": "/", "bytes": 10, "files": 2, "sha256": "0" * 64},  # a folder: never walked to the end
    {"path": "/", "bytes": "10", "files": "2"},  # junk types
    "not a record",
])
def test_a_crafted_record_is_refused_without_reading(tmp_path, entry):
    from blocks.run.data_record import check_run_data

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"format": "blocks-run/1", "data": {"images": entry}}))
    recipe = blocks.load_recipe({"model": {"input": {"shape": [1, 8, 8]}, "backbone": ["flatten"],
                                           "head": {"type": "softmax", "classes": 2}},
                                 "data": {"images": {"path": "/"}}})
    with pytest.raises(blocks.SpecError, match="outside the run folder, and (what is there no "
                       "longer has|the run folder records no)"):
        check_run_data(recipe, run)


def test_blocks_save_with_a_recipe_rebases_its_relative_data_path(project, tmp_path):
    """`blocks.save(model, dir, recipe=...)` writes the recipe into another folder than the one
    it was loaded from: its relative data path must still lead to the same file."""
    recipe = blocks.load_recipe(project / "recipes" / "r.yaml")
    model = blocks.build(recipe.model, seed=0)
    run = blocks.save(model, tmp_path / "elsewhere" / "deep" / "run", recipe=recipe)
    stored = blocks.load_recipe(run / "recipe.yaml").data.csv.path
    assert (run / stored).resolve() == (project / "data" / "table.csv").resolve()
    again = blocks.save(model, run, recipe=blocks.load_recipe(run / "recipe.yaml"))
    assert blocks.load_recipe(again / "recipe.yaml").data.csv.path == stored  # idempotent
