"""`train.compile: true`: the same training as eager, checkpoints for an uncompiled model, and a
clear error where compiling fails."""

from __future__ import annotations

import pytest
import torch
from trainkit import learnable_data, mlp_spec

import blocks
from blocks.train import compiled as compiled_module


@pytest.mark.slow  # inductor compiles forward and backward once (tens of seconds on a busy CPU)
def test_compiled_training_matches_eager_over_three_epochs_and_saves_a_plain_model(tmp_path):
    x, y = learnable_data(96)
    spec = {"epochs": 3, "batch_size": 16, "optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.9}}
    eager_model = blocks.build(mlp_spec(), seed=0)
    eager = blocks.Trainer(eager_model, spec, quiet=True).fit((x, y))
    model = blocks.build(mlp_spec(), seed=0)
    trainer = blocks.Trainer(model, {**spec, "compile": True}, run_dir=tmp_path, quiet=True)
    history = trainer.fit((x, y))
    assert trainer.compiled.compile_seconds > 0
    for ours, theirs in zip(history.to_list(), eager.to_list(), strict=True):
        assert ours["train/loss"] == pytest.approx(theirs["train/loss"], rel=1e-5, abs=1e-6)
        assert ours["train/accuracy"] == theirs["train/accuracy"]
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, eager_model.state_dict()[name], rtol=1e-5, atol=1e-6)
    blocks.save(model, tmp_path / "run")
    plain = blocks.load(tmp_path / "run")
    assert set(plain.state_dict()) == set(eager_model.state_dict())  # no `_orig_mod.` keys
    fresh = blocks.Trainer(blocks.build(mlp_spec(), seed=1), spec, run_dir=tmp_path, quiet=True)
    fresh.resume()  # the compiled run's checkpoint, into an uncompiled model
    for name, value in fresh.model.state_dict().items():
        assert torch.equal(value, model.state_dict()[name]), name


def test_compile_failure_is_a_blocks_error(monkeypatch):
    def broken(module, **_):
        def call(x):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")
        return call

    monkeypatch.setattr(compiled_module.torch, "compile", broken)
    x, y = learnable_data(16)
    model = blocks.build(mlp_spec(), seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = blocks.Trainer(model, {"epochs": 1, "batch_size": 8, "compile": True}, quiet=True)
    with pytest.raises(blocks.BlocksError, match=r"^train.compile: torch.compile failed on this "
                       r"platform \(RuntimeError: InvalidCxxCompiler: No working C\+\+ compiler "
                       r"found\); set `compile: false` to train eagerly$"):
        trainer.fit((x, y))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_compile_is_off_by_default_and_documented():
    spec = blocks.TrainSpec()
    assert spec.compile is False
    assert "torch.compile" in blocks.TrainSpec.model_fields["compile"].description
