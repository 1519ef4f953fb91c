"""`train.loggers`: TensorBoard and MLflow receive what the run folder's history holds; a failing
tracker is reported once and training goes on."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import blocks
from blocks.train import loggers

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from trainkit import learnable_data, mlp_spec  # noqa: E402

TAGS = {"train/loss", "train/accuracy", "val/loss", "val/accuracy", "lr"}


def train(tmp_path: Path, names: list[str], epochs: int = 2) -> blocks.Trainer:
    torch.manual_seed(0)
    model = blocks.build(mlp_spec(name="tiny"))
    x, y = learnable_data()
    trainer = blocks.Trainer(model, {"epochs": epochs, "batch_size": 32, "loggers": names,
                                     "device": "cpu"}, run_dir=tmp_path / "run", quiet=True)
    trainer.fit((x[:64], y[:64]), (x[64:], y[64:]))
    return trainer


def test_default_is_csv_and_writes_the_history_only(tmp_path):
    trainer = train(tmp_path, ["csv"])
    assert blocks.TrainSpec().loggers == ["csv"]
    assert {p.name for p in (tmp_path / "run").iterdir()} >= {"metrics.csv", "metrics.jsonl"}
    assert not (tmp_path / "run" / loggers.TENSORBOARD_DIR).exists()
    assert trainer.history.last["epoch"] == 2


def test_tensorboard_event_file_holds_every_epoch(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = train(tmp_path, ["csv", "tensorboard"])
    events = EventAccumulator(str(tmp_path / "run" / loggers.TENSORBOARD_DIR))
    events.Reload()
    assert set(events.Tags()["scalars"]) >= TAGS
    for tag in TAGS:
        logged = [(e.step, e.value) for e in events.Scalars(tag)]
        expected = [(r["epoch"], pytest.approx(r[tag], rel=1e-6)) for r in trainer.history.to_list()]
        assert logged == expected, tag
    assert events.Tags()["graph"]  # the model graph, traced once


def test_tensorboard_graph_leaves_batchnorm_statistics_alone(tmp_path):
    pytest.importorskip("tensorboard")
    model = blocks.build(blocks.ModelSpec(input={"shape": [6]}, backbone=[
        {"type": "linear", "out_features": 8}, "batchnorm1d"], head={"type": "softmax", "classes": 3}))
    trainer = blocks.Trainer(model, {"epochs": 1, "loggers": ["tensorboard"], "device": "cpu"},
                             run_dir=tmp_path / "run", quiet=True)
    trainer.fit(learnable_data())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loggers.TensorBoardTracker(trainer).close(None)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training is True


@pytest.mark.slow
def test_mlflow_store_holds_params_and_metrics_per_epoch(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = blocks.run_recipe("""
model:
  name: tiny
  input: {shape: [4]}
  backbone: [{type: linear, out_features: 8}, relu]
  head: {type: softmax, classes: 3}
data: {dataset: iris}
train: {epochs: 2, batch_size: 32, loggers: [csv, mlflow], optimizer: {type: sgd, lr: 0.05}}
""", tmp_path / "runs" / "iris", plots=False)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("blocks").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "iris"
    assert run.data.params["optimizer.lr"] == "0.05"
    assert run.data.params["optimizer.type"] == "sgd"
    assert run.data.params["model.name"] == "tiny"
    history = result.history.to_list()
    for key in ("train/loss", "val/loss", "val/accuracy"):
        metrics = client.get_metric_history(run.info.run_id, key)
        assert [(m.step, m.value) for m in metrics] == [
            (r["epoch"], pytest.approx(r[key], rel=1e-6)) for r in history]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"recipe.yaml", "model.safetensors", "metrics.csv"} <= artifacts


def test_a_failing_tracker_is_reported_once_and_training_goes_on(tmp_path, monkeypatch):
    calls = []

    class Broken:
        name = "tensorboard"

        def __init__(self, trainer):
            pass

        def log_epoch(self, trainer, record):
            calls.append(record["epoch"])
            raise OSError("disk full")

        def close(self, run_dir):
            pass

    monkeypatch.setitem(loggers.TRACKERS, "tensorboard", Broken)
    with pytest.warns(loggers.LoggerWarning) as caught:
        trainer = train(tmp_path, ["tensorboard"], epochs=3)
    assert [str(w.message) for w in caught] == [
        "the tensorboard logger failed and is switched off; training goes on: OSError: disk full"]
    assert calls == [1]  # switched off after the first failure
    assert trainer.history.last["epoch"] == 3


def test_a_missing_package_names_the_extra(tmp_path, monkeypatch):
    def missing(trainer):
        raise ModuleNotFoundError("No module named 'mlflow'", name="mlflow")

    monkeypatch.setitem(loggers.TRACKERS, "mlflow", missing)
    with pytest.warns(loggers.LoggerWarning, match=r"pip install 'blocks\[mlflow\]'"):
        trainer = train(tmp_path, ["mlflow"], epochs=1)
    assert trainer.history.last["epoch"] == 1


def test_only_rank_zero_logs(tmp_path, monkeypatch):
    opened = []
    monkeypatch.setattr(loggers, "_open", lambda trainer: opened.append(trainer) or [])
    trainer = blocks.Trainer(blocks.build(mlp_spec()), {"epochs": 1, "loggers": ["tensorboard"]},
                             quiet=True)
    trainer.is_main = False  # what a rank > 0 of a DDP run has
    trainer.fit(learnable_data())
    assert opened == []
    trainer.is_main = True
    loggers.epoch_end(trainer, trainer.history.last)
    assert opened == [trainer]


def test_bad_logger_name_is_a_located_error():
    with pytest.raises(blocks.SpecError) as err:
        blocks.load_recipe({"model": mlp_spec().model_dump(), "train": {"loggers": ["wandb"]}})
    assert str(err.value) == ("train.loggers[0]: Input should be 'csv', 'tensorboard' or 'mlflow', "
                              "got 'wandb'")
