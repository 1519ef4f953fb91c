"""The bundled recipes reach their accuracy through the CLI, with each recipe's own seed."""

from __future__ import annotations

import json

import pytest

from blocks.cli import main


def train_recipe(name: str, out) -> tuple[list[dict], dict]:
    assert main(["train", name, "--out", str(out), "--quiet"]) == 0
    history = json.loads((out / "history.json").read_text())
    info = json.loads((out / "run.json").read_text())
    return history, info


@pytest.mark.slow
def test_seed_cnn_on_digits_reaches_97_percent(tmp_path):
    history, info = train_recipe("seed_cnn", tmp_path / "seed_cnn")
    assert len(history) == 10 and info["final"] == history[-1]
    # the saved (final-epoch) model, not just the best epoch
    assert history[-1]["val/accuracy"] >= 0.97, [r["val/accuracy"] for r in history]


@pytest.mark.slow
def test_tabular_mlp_on_breast_cancer_reaches_95_percent(tmp_path):
    history, _ = train_recipe("tabular_mlp", tmp_path / "tabular")
    assert len(history) == 30
    assert history[-1]["val/accuracy"] >= 0.95, [r["val/accuracy"] for r in history]
    assert "val/f1" in history[-1]


@pytest.mark.slow
def test_residual_cnn_on_digits(tmp_path):
    history, _ = train_recipe("residual_cnn", tmp_path / "residual")
    assert history[-1]["val/accuracy"] >= 0.97, [r["val/accuracy"] for r in history]
