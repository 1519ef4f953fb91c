"""History records and the metric files written to a run folder."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from trainkit import learnable_data, mlp_spec

import blocks
from blocks.data.splits import load_splits


def test_single_head_keys_and_evaluate():
    model = blocks.build(mlp_spec(), seed=0)
    trainer = blocks.Trainer(model, {"epochs": 2, "batch_size": 16}, quiet=True)
    history = trainer.fit(learnable_data(64), learnable_data(20, seed=1))
    assert isinstance(history, blocks.History)
    records = history.to_list()
    assert [r["epoch"] for r in records] == [1, 2]
    assert {"train/loss", "train/accuracy", "val/loss", "val/accuracy", "lr", "time"} <= set(records[0])
    assert 0 <= records[-1]["val/accuracy"] <= 1
    metrics = trainer.evaluate(learnable_data(20, seed=1))
    assert set(metrics) == {"test/loss", "test/accuracy"}
    assert metrics["test/loss"] == pytest.approx(records[-1]["val/loss"])
    assert set(trainer.evaluate(learnable_data(20), split="holdout")) == {"holdout/loss",
                                                                          "holdout/accuracy"}
    records[0]["train/loss"] = -1.0  # to_list hands out copies
    assert history[0]["train/loss"] != -1.0


def test_sigmoid_head_has_f1_and_per_label_metrics():
    spec = blocks.ModelSpec(input={"shape": [4]}, head={"type": "sigmoid", "classes": 2,
                                                        "labels": ["red", "round"]})
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 4, generator=g)
    y = (x[:, :2] > 0).float()
    trainer = blocks.Trainer(blocks.build(spec, seed=0), {"epochs": 2, "batch_size": 8}, quiet=True)
    record = trainer.fit((x, y), (x, y)).last
    for split in ("train", "val"):
        for key in ("loss", "accuracy", "f1", "red/accuracy", "red/f1", "round/accuracy", "round/f1"):
            assert f"{split}/{key}" in record, f"{split}/{key}"
    assert record["val/accuracy"] == pytest.approx(
        (record["val/red/accuracy"] + record["val/round/accuracy"]) / 2)
    # hand-computed metrics on the final weights
    metrics = trainer.evaluate((x, y))
    pred = trainer.model.predict(x).bool()
    truth = y.bool()
    assert metrics["test/red/accuracy"] == pytest.approx(float((pred[:, 0] == truth[:, 0]).float().mean()))
    tp = (pred & truth).sum(0).float()
    fp = (pred & ~truth).sum(0).float()
    fn = (~pred & truth).sum(0).float()
    f1 = 2 * tp / (2 * tp + fp + fn)
    assert metrics["test/round/f1"] == pytest.approx(float(f1[1]))
    assert metrics["test/f1"] == pytest.approx(float(f1.mean()))


def test_multitask_recipe_keys_per_head():
    recipe = blocks.load_recipe("multitask")
    splits = load_splits(recipe)
    model = blocks.build(recipe.model, seed=0)
    trainer = blocks.Trainer(model, recipe.train.model_copy(update={"epochs": 1}), quiet=True)
    record = trainer.fit(splits.train.as_tuple(), splits.val.as_tuple()).last
    for key in ("train/loss", "val/loss", "val/kind/loss", "val/kind/accuracy", "val/tags/loss",
                "val/tags/accuracy", "val/tags/f1", "val/tags/0/accuracy", "val/tags/2/f1"):
        assert key in record, key
    assert "val/accuracy" not in record
    assert record["val/loss"] == pytest.approx(record["val/kind/loss"] + 0.5 * record["val/tags/loss"])
    metrics = trainer.evaluate(splits.val.as_tuple())
    assert metrics["test/kind/accuracy"] == pytest.approx(record["val/kind/accuracy"])


def test_metric_files_agree(tmp_path):
    model = blocks.build(mlp_spec(), seed=0)
    history = blocks.Trainer(model, {"epochs": 3, "batch_size": 16}, run_dir=tmp_path,
                             quiet=True).fit(learnable_data(48), learnable_data(16, seed=1))
    as_json = json.loads((tmp_path / "history.json").read_text())
    as_jsonl = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    with open(tmp_path / "metrics.csv", newline="") as handle:
        as_csv = list(csv.DictReader(handle))
    assert as_json == as_jsonl == history.to_list()
    assert len(as_csv) == 3
    for row, record in zip(as_csv, as_json, strict=True):
        assert set(row) == set(record)
        for key, value in record.items():
            assert float(row[key]) == pytest.approx(value, rel=1e-12)


def test_history_helpers():
    history = blocks.History([{"epoch": 1, "val/loss": 0.5}, {"epoch": 2, "val/loss": 0.3},
                              {"epoch": 3, "val/loss": float("nan")}])
    assert history.metric("val/loss")[:2] == [0.5, 0.3]
    assert history.best("val/loss")["epoch"] == 2
    assert history.best("val/loss", "max")["epoch"] == 1
    assert history.last["epoch"] == 3 and len(history) == 3
    assert blocks.History().best("val/loss") is None
