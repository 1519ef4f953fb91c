"""`blocks train / evaluate / predict`: run folders, overrides, outputs, exit codes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import blocks
from blocks.cli import main

RECIPE = """\
model:
  name: tiny
  input: {shape: [4]}
  backbone: [{type: linear, out_features: 8}, relu]
  head: {type: softmax, classes: 3, labels: [ant, bee, cat]}
data: {csv: {path: table.csv, target: label}, val_fraction: 0.25}
train: {epochs: 3, batch_size: 8, optimizer: {type: adam, lr: 0.02}}
"""


@pytest.fixture
def recipe(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 4))
    y = x[:, :3].argmax(1)
    rows = ["f1,f2,f3,f4,label"] + [",".join(f"{v:.5f}" for v in r) + f",{t}" for r, t in zip(x, y, strict=True)]
    (tmp_path / "table.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "features.csv").write_text("\n".join(r.rsplit(",", 1)[0] for r in rows[:11]) + "\n")
    np.savez(tmp_path / "features.npz", x=x[:6].astype(np.float32))
    path = tmp_path / "tiny.yaml"
    path.write_text(RECIPE)
    return path


def train(recipe: Path, out: Path, *extra: str) -> int:
    return main(["train", str(recipe), "--out", str(out), "--quiet", *extra])


def test_train_writes_the_run_folder_and_refuses_to_overwrite(recipe, tmp_path, capsys):
    out = tmp_path / "run"
    assert train(recipe, out) == 0
    info = json.loads((out / "run.json").read_text())
    assert info["epochs"] == 3 and info["final"]["epoch"] == 3 and info["device"] == "cpu"
    weights = (out / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert train(recipe, out) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--force" in err and "--resume" in err
    assert "Traceback" not in err
    assert (out / "model.safetensors").read_bytes() == weights  # untouched
    assert train(recipe, out, "--force", "--seed", "3") == 0
    assert (out / "model.safetensors").read_bytes() != weights


def test_overrides(recipe, tmp_path):
    out = tmp_path / "run"
    assert train(recipe, out, "--epochs", "2", "--device", "cpu", "--seed", "11") == 0
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 2
    saved = blocks.load_recipe(out / "recipe.yaml")
    assert (saved.train.epochs, saved.train.device, saved.train.seed) == (2, "cpu", 11)


@pytest.mark.parametrize("args", [["--epochs", "0"], ["--device", "tpu"]])
def test_bad_overrides_exit_2(recipe, tmp_path, capsys, args):
    assert train(recipe, tmp_path / "run", *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err


def test_resume_without_checkpoint_exits_2(recipe, tmp_path, capsys):
    assert train(recipe, tmp_path / "none", "--resume") == 2
    assert "no checkpoint.safetensors" in capsys.readouterr().err


def test_evaluate_text_and_json(recipe, tmp_path, capsys):
    out = tmp_path / "run"
    assert train(recipe, out) == 0
    capsys.readouterr()
    # the run's data lies outside its folder, but it is the data recorded at training time
    assert main(["evaluate", str(out), "--json"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["evaluate", str(out), "--json", "--trust-paths"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) == {"val/loss", "val/accuracy"}
    final = json.loads((out / "run.json").read_text())["final"]
    assert metrics["val/accuracy"] == pytest.approx(final["val/accuracy"])
    assert metrics["val/loss"] == pytest.approx(final["val/loss"], rel=1e-5)
    assert main(["evaluate", str(out), "--split", "train", "--trust-paths"]) == 0
    text = capsys.readouterr().out
    assert "train/loss" in text and "train/accuracy" in text


def test_evaluate_with_data_path_relative_to_the_recipe(recipe, tmp_path, capsys):
    # the run folder's recipe.yaml lives elsewhere: the data path is stored relative to it
    out = tmp_path / "elsewhere" / "run"
    assert train(recipe, out) == 0
    saved = blocks.load_recipe(out / "recipe.yaml")
    assert saved.data.csv.path == "../../table.csv"
    assert (out / saved.data.csv.path).resolve() == (tmp_path / "table.csv").resolve()
    capsys.readouterr()
    assert main(["evaluate", str(out), "--json"]) == 0
    assert "val/accuracy" in json.loads(capsys.readouterr().out)


def test_evaluate_not_a_run_folder(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a blocks run folder" in err and "Traceback" not in err


@pytest.mark.parametrize("source", ["features.csv", "features.npz"])
def test_predict_writes_labels_and_probabilities(recipe, tmp_path, capsys, source):
    out = tmp_path / "run"
    assert train(recipe, out) == 0
    target = tmp_path / "pred.csv"
    assert main(["predict", str(out), str(tmp_path / source), "-o", str(target)]) == 0
    with open(target, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["label", "p/ant", "p/bee", "p/cat"]
    assert len(rows) == 1 + (10 if source.endswith("csv") else 6)
    for row in rows[1:]:
        assert row[0] in {"ant", "bee", "cat"}
        probs = [float(v) for v in row[1:]]
        assert sum(probs) == pytest.approx(1.0, abs=1e-5)
        assert row[0] == ["ant", "bee", "cat"][int(np.argmax(probs))]


def test_predict_to_stdout(recipe, tmp_path, capsys):
    out = tmp_path / "run"
    assert train(recipe, out) == 0
    capsys.readouterr()
    assert main(["predict", str(out), str(tmp_path / "features.csv")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "label,p/ant,p/bee,p/cat" and len(lines) == 11


def test_predict_errors_exit_2(recipe, tmp_path, capsys):
    out = tmp_path / "run"
    assert train(recipe, out) == 0
    capsys.readouterr()
    assert main(["predict", str(out), str(tmp_path / "missing.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "wide.csv").write_text("a,b,c\n1,2,3\n")
    assert main(["predict", str(out), str(tmp_path / "wide.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err
    (tmp_path / "words.csv").write_text("f1,f2,f3,f4\n1,2,x,4\n")
    assert main(["predict", str(out), str(tmp_path / "words.csv")]) == 2
    err = capsys.readouterr().err
    assert "line 2, column 'f3': 'x' is not a number" in err and "Traceback" not in err
    (tmp_path / "renamed.csv").write_text("a,b,c,d\n1,2,3,4\n")
    assert main(["predict", str(out), str(tmp_path / "renamed.csv")]) == 2
    assert "missing column(s) 'f1', 'f2', 'f3', 'f4'" in capsys.readouterr().err
