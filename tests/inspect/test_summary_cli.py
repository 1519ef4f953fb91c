"""`blocks summary` from the command line: formats, comparing two recipes, a billion parameters."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import blocks
from blocks.cli import main
from blocks.inspect.summary import Summary

BILLION = """\
model:
  name: billion
  input: {shape: [65536]}
  backbone:
    - {type: linear, out_features: 16384}
    - relu
    - {type: linear, out_features: 16384}
    - relu
    - {type: linear, out_features: 4096}
  head: {type: softmax, classes: 1000}
"""
BILLION_PARAMS = (65536 * 16384 + 16384) + (16384 * 16384 + 16384) + (16384 * 4096 + 4096) + (
    4096 * 1000 + 1000)


def test_billion_parameter_spec_from_the_cli_in_seconds(tmp_path) -> None:
    recipe = tmp_path / "billion.yaml"
    recipe.write_text(BILLION)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "blocks", "summary", str(recipe), "--format",
                             "json"], capture_output=True, text=True, timeout=120, check=False,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert BILLION_PARAMS > 1e9 and data["total_params"] == BILLION_PARAMS
    assert data["param_bytes"] == 4 * BILLION_PARAMS and data["probe_device"] == "meta"
    # CPU seconds of the whole command (interpreter, imports, summary): what this machine spends
    # on it, whatever else is running; the wall-clock bound only guards against a hang.
    print(f"billion-parameter summary: {wall:.2f} s wall, {cpu:.2f} s CPU")
    assert cpu < 10, f"took {cpu:.1f} s of CPU"
    assert wall < 60


def test_formats(capsys) -> None:
    assert main(["summary", "multitask"]) == 0
    table = capsys.readouterr().out
    assert "heads.kind softmax" in table and "Outputs: kind [N, 4], tags [N, 3]" in table
    assert main(["summary", "multitask", "--format", "json"]) == 0
    summary = Summary.from_json(capsys.readouterr().out)
    assert summary.total_params == 5703 and summary.outputs == {"kind": [4], "tags": [3]}
    assert main(["summary", "residual_cnn", "--format", "markdown", "--depth", "0"]) == 0
    markdown = capsys.readouterr().out
    assert "| `backbone[3] residual` |" in markdown and "blocks[0]" not in markdown


def test_compare_two_recipes(tmp_path, capsys) -> None:
    base = blocks.load_recipe("tabular_mlp")
    data = base.model_dump(mode="json")
    data["model"]["backbone"][0]["out_features"] = 128
    wide = tmp_path / "wide.yaml"
    wide.write_text(blocks.dump_recipe(blocks.Recipe.model_validate(data)))
    assert main(["summary", "tabular_mlp", str(wide)]) == 0
    out = capsys.readouterr().out
    assert "A: tabular_mlp" in out and "B: wide" in out and "Δ params" in out
    assert main(["summary", "tabular_mlp", str(wide), "--diff"]) == 0
    diff = capsys.readouterr().out
    assert "backbone[0] linear" in diff and "backbone[5] relu" not in diff  # same shape, no params
    assert main(["summary", "tabular_mlp", str(wide), "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    delta = (30 * 128 + 128 + 2 * 128 + 128 * 32 + 32) - (30 * 64 + 64 + 2 * 64 + 64 * 32 + 32)
    assert result["params_delta"] == delta
    assert result["rows"][0]["params_delta"] == 30 * 64 + 64


def test_bad_input_exits_2_with_located_messages(tmp_path, capsys) -> None:
    assert main(["summary", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  input: {shape: [4]}\n  backbone:\n    - {type: linear, out_features: x}\n"
                   "  head: {type: softmax, classes: 2}\n")
    assert main(["summary", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml:4" in err and "model.backbone[0]" in err and "Traceback" not in err
    assert main(["summary", "seed_cnn", "--diff"]) == 2
    assert "--diff compares two recipes" in capsys.readouterr().err
    assert main(["summary", "seed_cnn", "--batch-size", "0"]) == 2
    assert main(["summary", "a", "b", "c"]) == 2


def test_help_lists_the_verbs(capsys) -> None:
    parser_help = subprocess.run([sys.executable, "-m", "blocks", "--help"], capture_output=True,
                                 text=True, timeout=60, check=False).stdout
    for verb in ("summary", "graph", "report"):
        assert verb in parser_help
    assert Path(blocks.__file__).exists()
