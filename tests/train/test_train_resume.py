"""Checkpoints: an interrupted run resumes bit-identically; damaged files are refused, not loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from trainkit import learnable_data, mlp_spec

import blocks
from blocks.cli import main
from blocks.train.checkpoint import CorruptCheckpointError

RESUME_SPEC = {"epochs": 4, "batch_size": 16, "seed": 7,
               "optimizer": {"type": "adam", "lr": 0.01},
               "scheduler": {"type": "one_cycle", "pct_start": 0.4}}


class Interrupt(Exception):
    pass


def stop_after(epoch: int):
    def callback(trainer, record):
        if record["epoch"] == epoch:
            raise Interrupt

    return callback


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_resume_after_interruption_is_bit_identical(tmp_path):
    train, val = learnable_data(90), learnable_data(30, seed=1)
    whole = blocks.build(mlp_spec(), seed=1)
    history = blocks.Trainer(whole, RESUME_SPEC, quiet=True).fit(train, val)

    run = tmp_path / "run"
    first = blocks.build(mlp_spec(), seed=1)
    with pytest.raises(Interrupt):
        blocks.Trainer(first, RESUME_SPEC, run_dir=run, quiet=True,
                       callbacks=[stop_after(2)]).fit(train, val)
    assert (run / "checkpoint.safetensors").exists()
    torch.manual_seed(12345)  # whatever happened to the global RNG in between must not matter
    second = blocks.build(mlp_spec(), seed=99)  # different initial weights: all come from the file
    trainer = blocks.Trainer(second, RESUME_SPEC, run_dir=run, quiet=True)
    resumed = trainer.fit(train, val, resume=True)

    assert_same_weights(whole.state_dict(), second.state_dict())
    assert trainer.global_step == 4 * 6
    assert len(resumed) == 4
    # the per-epoch records agree too (wall time aside)
    strip = lambda h: [{k: v for k, v in r.items() if k != "time"} for r in h]  # noqa: E731
    assert strip(resumed) == strip(history)
    assert [r["lr"] for r in resumed] == [r["lr"] for r in history]


def test_checkpoint_keeps_optimizer_scheduler_and_rng(tmp_path):
    model = blocks.build(mlp_spec(), seed=1)
    trainer = blocks.Trainer(model, {**RESUME_SPEC, "epochs": 1}, run_dir=tmp_path, quiet=True)
    trainer.fit(learnable_data(32))
    fresh = blocks.Trainer(blocks.build(mlp_spec(), seed=2), RESUME_SPEC, run_dir=tmp_path, quiet=True)
    fresh.resume()
    assert fresh.epoch == 1 and fresh.global_step == 2
    assert_same_weights(model.state_dict(), fresh.model.state_dict())
    a, b = trainer.optimizer.state_dict(), fresh.optimizer.state_dict()
    for key in a["state"]:
        for name, value in a["state"][key].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["state"][key][name]))
    assert torch.equal(fresh.generator.get_state(), trainer.generator.get_state())


def _recipe(tmp_path: Path, epochs: int = 4) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(f"""\
model:
  name: tiny
  input: {{shape: [6]}}
  backbone:
    - {{type: linear, out_features: 16}}
    - relu
    - {{type: dropout, p: 0.3}}
  head: {{type: softmax, classes: 3}}
data: {{synthetic: {{samples: 120}}, val_fraction: 0.25}}
train:
  epochs: {epochs}
  batch_size: 16
  optimizer: {{type: adam, lr: 0.01}}
  scheduler: {{type: step, step_size: 1, gamma: 0.7}}
""")
    return path


def test_cli_resume_equals_uninterrupted(tmp_path, capsys):
    recipe = str(_recipe(tmp_path))
    assert main(["train", recipe, "--out", str(tmp_path / "whole"), "--quiet"]) == 0
    split = str(tmp_path / "split")
    assert main(["train", recipe, "--out", split, "--epochs", "2", "--quiet"]) == 0
    assert main(["train", recipe, "--out", split, "--epochs", "4", "--resume", "--quiet"]) == 0
    assert_same_weights(load_file(tmp_path / "whole" / "model.safetensors"),
                        load_file(Path(split) / "model.safetensors"))
    history = json.loads((Path(split) / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]


def test_truncated_checkpoint_is_reported_not_loaded(tmp_path, capsys):
    model = blocks.build(mlp_spec(), seed=1)
    trainer = blocks.Trainer(model, {"epochs": 1}, run_dir=tmp_path, quiet=True)
    trainer.fit(learnable_data(32))
    ckpt = tmp_path / "checkpoint.safetensors"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    other = blocks.build(mlp_spec(), seed=5)
    before = {k: v.clone() for k, v in other.state_dict().items()}
    fresh = blocks.Trainer(other, {"epochs": 2}, run_dir=tmp_path, quiet=True)
    with pytest.raises(CorruptCheckpointError, match="corrupt or truncated"):
        fresh.fit(learnable_data(32), resume=True)
    assert_same_weights(before, other.state_dict())
    assert fresh.epoch == 0
    # garbage and an empty file too
    for junk in (b"", b"not a safetensors file at all" * 10):
        ckpt.write_bytes(junk)
        with pytest.raises(CorruptCheckpointError):
            fresh.resume()


def test_cli_resume_from_truncated_checkpoint_exits_2(tmp_path, capsys):
    recipe = str(_recipe(tmp_path, epochs=1))
    out = tmp_path / "run"
    assert main(["train", recipe, "--out", str(out), "--quiet"]) == 0
    ckpt = out / "checkpoint.safetensors"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    capsys.readouterr()
    assert main(["train", recipe, "--out", str(out), "--epochs", "2", "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint" in err and "corrupt or truncated" in err
    assert "Traceback" not in err


def test_truncated_weights_file_is_reported_by_load(tmp_path):
    model = blocks.build(mlp_spec(), seed=1)
    blocks.save(model, tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-40])
    with pytest.raises(CorruptCheckpointError, match="damaged"):
        blocks.load(tmp_path)
    weights.unlink()
    with pytest.raises(CorruptCheckpointError, match="no weights file"):
        blocks.load(tmp_path)


def test_cli_evaluate_with_truncated_weights_exits_2(tmp_path, capsys):
    recipe = str(_recipe(tmp_path, epochs=1))
    out = tmp_path / "run"
    assert main(["train", recipe, "--out", str(out), "--quiet"]) == 0
    weights = out / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-40])
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "model.safetensors" in err and "Traceback" not in err


def test_resume_with_a_different_length_for_a_per_step_schedule_is_refused(tmp_path, capsys):
    model = blocks.build(mlp_spec(), seed=1)
    blocks.Trainer(model, {**RESUME_SPEC, "epochs": 2}, run_dir=tmp_path, quiet=True).fit(
        learnable_data(32))
    longer = blocks.Trainer(model, RESUME_SPEC, run_dir=tmp_path, quiet=True)
    with pytest.raises(blocks.TrainingError, match="one_cycle schedule laid out for 2 epochs"):
        longer.fit(learnable_data(32), resume=True)
    assert longer.epoch == 0 and longer.global_step == 0
    # through the CLI: exit 2 and a message, not a traceback from deep inside the scheduler
    recipe = tmp_path / "oc.yaml"
    recipe.write_text(_recipe(tmp_path).read_text().replace(
        "{type: step, step_size: 1, gamma: 0.7}", "{type: one_cycle}"))
    out = str(tmp_path / "run")
    assert main(["train", str(recipe), "--out", out, "--epochs", "2", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["train", str(recipe), "--out", out, "--epochs", "4", "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "laid out for 2 epochs" in err and "Traceback" not in err
