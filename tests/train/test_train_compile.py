"""`train.compile: true` compiles the whole step (grad, optimizer update, non-finite guard) as
one graph: the same training as eager to float tolerance, the ordinary model and optimizer state
underneath, no host sync per step, and the forward-only compile (said once) where the step
cannot be one graph."""

from __future__ import annotations

import shutil
import warnings

import pytest
import torch
from test_train_cli import recipe, train  # noqa: F401 - a fixture and its CLI call
from test_train_sync import count_syncs  # noqa: F401 - a fixture
from trainkit import learnable_data, mlp_spec

import blocks
from blocks.train import compiled_step
from blocks.train.compiled import CompiledForward, CompileError
from blocks.train.trainer import TrainingWarning


def cnn_spec() -> blocks.ModelSpec:
    """Conv, batchnorm (running statistics), dropout: what the step must update like eager."""
    return blocks.ModelSpec(
        input={"shape": [1, 6, 6]},
        # no conv bias: batchnorm cancels its gradient, and Adam would amplify the float noise
        backbone=[{"type": "conv2d", "out_channels": 4, "kernel_size": 3, "bias": False},
                  {"type": "batchnorm2d"},
                  "relu", {"type": "dropout", "p": 0.2}, "flatten"],
        head={"type": "softmax", "classes": 3})


def image_data(n: int = 48):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 1, 6, 6, generator=g)
    return x, (x[:, 0, :3].sum((1, 2)) > 0).long() + (x[:, 0, 3:].sum((1, 2)) > 1).long()


def two_head_spec() -> blocks.ModelSpec:
    return blocks.ModelSpec(
        input={"shape": [6]}, backbone=[{"type": "linear", "out_features": 8}, "relu"],
        heads={"kind": {"type": "softmax", "classes": 3, "class_weights": [1.0, 2.0, 0.5],
                        "label_smoothing": 0.1},
               "tags": {"type": "sigmoid", "classes": 2, "pos_weight": [2.0, 0.5], "loss_weight": 0.5}})


def two_head_data(n: int = 40):
    x, y = learnable_data(n)
    return x, {"kind": y, "tags": torch.stack([(x[:, 0] > 0), (x[:, 1] > 0.5)], 1).float()}


def train_both(spec, data, train: dict, **kwargs):
    """(eager trainer, compiled trainer) trained on the same data from the same weights."""
    eager = blocks.Trainer(blocks.build(spec, seed=0), train, quiet=True)
    eager.fit(data)
    compiled = blocks.Trainer(blocks.build(spec, seed=0), {**train, "compile": True}, quiet=True, **kwargs)
    compiled.fit(data)
    return eager, compiled


def assert_same_training(eager, compiled) -> None:
    assert compiled.compiled_step is not None and compiled.compiled is None
    assert compiled.compiled_step.compile_seconds > 0
    for ours, theirs in zip(compiled.history.to_list(), eager.history.to_list(), strict=True):
        for key, value in theirs.items():
            if key != "time":
                assert ours[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    state = eager.model.state_dict()
    for name, value in compiled.model.state_dict().items():  # batchnorm statistics included
        torch.testing.assert_close(value, state[name], rtol=1e-5, atol=1e-6, msg=name)
    theirs = eager.optimizer.state_dict()["state"]
    for index, ours in compiled.optimizer.state_dict()["state"].items():
        assert set(ours) == set(theirs[index])  # the torch optimizer's own state, same keys
        for key, value in ours.items():
            torch.testing.assert_close(value, theirs[index][key], rtol=1e-5, atol=1e-7, msg=key)
    assert compiled.global_step == eager.global_step


@pytest.mark.slow  # compiles one graph per case (seconds each on a busy CPU)
@pytest.mark.parametrize("train", [
    {"optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.9}},
    {"optimizer": {"type": "sgd", "lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.01},
     "clip_grad_norm": 0.5, "scheduler": "cosine"},
    {"optimizer": {"type": "adam", "lr": 0.02, "weight_decay": 0.01}, "scheduler": "one_cycle"},
    {"optimizer": {"type": "adamw", "lr": 0.02}, "param_groups": [{"prefix": "head", "lr": 0.005}]},
], ids=["sgd-momentum", "sgd-nesterov-clip-cosine", "adam-one-cycle", "adamw-param-groups"])
def test_compiled_step_trains_like_eager_over_three_epochs(train):
    x, y = learnable_data(100)  # 7 steps an epoch, the last one smaller (its own graph)
    eager, compiled = train_both(mlp_spec(), (x, y), {"epochs": 3, "batch_size": 16, **train})
    assert_same_training(eager, compiled)


@pytest.mark.slow
def test_compiled_step_under_bf16_autocast_trains_like_eager_to_bf16_precision():
    x, y = learnable_data(64)
    eager, compiled = train_both(mlp_spec(), (x, y), {
        "epochs": 3, "batch_size": 16, "precision": "bf16",
        "optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.9}})
    assert compiled.compiled_step is not None
    for ours, theirs in zip(compiled.history.to_list(), eager.history.to_list(), strict=True):
        assert ours["train/loss"] == pytest.approx(theirs["train/loss"], rel=5e-3)  # bf16 rounding
    for name, value in compiled.model.state_dict().items():
        torch.testing.assert_close(value, eager.model.state_dict()[name], rtol=0.02, atol=5e-3)


@pytest.mark.slow
def test_compiled_step_trains_a_batchnorm_cnn_like_eager():
    eager, compiled = train_both(cnn_spec(), image_data(), {
        "epochs": 3, "batch_size": 16, "optimizer": {"type": "adam", "lr": 0.01}})
    assert_same_training(eager, compiled)
    assert int(compiled.model.state_dict()["backbone.1.num_batches_tracked"]) == 9


@pytest.mark.slow
def test_compiled_step_keeps_the_trainers_loss_weighting_for_several_heads():
    eager, compiled = train_both(two_head_spec(), two_head_data(), {
        "epochs": 3, "batch_size": 16, "optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.9}})
    assert_same_training(eager, compiled)
    assert {"train/kind/accuracy", "train/tags/f1"} <= set(compiled.history.to_list()[-1])


@pytest.mark.slow
def test_a_compiled_runs_checkpoint_and_saved_model_load_without_compiling(tmp_path, capsys):
    x, y = learnable_data(64)
    train = {"epochs": 3, "batch_size": 16, "optimizer": {"type": "adam", "lr": 0.02}}
    model = blocks.build(mlp_spec(), seed=0)
    trainer = blocks.Trainer(model, {**train, "epochs": 2, "compile": True}, run_dir=tmp_path)
    trainer.fit((x, y))
    # the slow first epoch says why, once
    epochs = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    seconds = trainer.compiled_step.compile_seconds
    assert epochs[0].endswith(f"  (compiling took {seconds:.1f}s of it, once per run)")
    assert len(epochs) == 2 and "compiling" not in epochs[1]
    blocks.save(model, tmp_path / "saved")
    plain = blocks.load(tmp_path / "saved")
    assert set(plain.state_dict()) == set(model.state_dict())  # no `_orig_mod.` keys
    assert torch.equal(plain.predict_proba(x), model.eval().predict_proba(x))
    # the compiled run's checkpoint resumed eagerly, and compiled: the third epoch as in eager
    eager = blocks.Trainer(blocks.build(mlp_spec(), seed=0), train, quiet=True)
    eager.fit((x, y))
    for compile_ in (False, True):
        run_dir = tmp_path / f"resumed-{compile_}"  # each from the epoch-2 checkpoint
        run_dir.mkdir()
        shutil.copy(tmp_path / "checkpoint.safetensors", run_dir)
        resumed = blocks.Trainer(blocks.build(mlp_spec(), seed=1), {**train, "compile": compile_},
                                 run_dir=run_dir, quiet=True)
        resumed.fit((x, y), resume=True)
        assert resumed.global_step == eager.global_step
        for name, value in resumed.model.state_dict().items():
            torch.testing.assert_close(value, eager.model.state_dict()[name], rtol=1e-5, atol=1e-6)
        assert resumed.history.to_list()[-1]["train/loss"] == pytest.approx(
            eager.history.to_list()[-1]["train/loss"], rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", [{"type": "sgd", "momentum": 0.9}, {"type": "adamw"}])
def test_a_non_finite_compiled_step_k_leaves_the_state_after_step_k_minus_1(optimizer):
    x, y = learnable_data(40)  # 10 steps of 4 per epoch
    model = blocks.build(mlp_spec(), seed=0)
    trainer = blocks.Trainer(model, {"epochs": 3, "batch_size": 4, "optimizer": optimizer,
                                     "scheduler": "cosine", "compile": True}, quiet=True)
    factor = torch.ones(())  # read by the compiled graph as an input: NaN from step 13 on
    model.register_forward_hook(lambda module, args, output: output * factor)
    step, seen, snapshot = trainer.compiled_step, {"calls": 0}, {}

    def counting(*args):
        seen["calls"] += 1
        if seen["calls"] == 13:  # epoch 2, step 3: what steps 1..12 left
            snapshot["model"] = {k: v.clone() for k, v in model.state_dict().items()}
            snapshot["optimizer"] = {id(p): {k: v.clone() for k, v in s.items()}
                                     for p, s in trainer.optimizer.state.items()}
            snapshot["lr"] = trainer.optimizer.param_groups[0]["lr"]
            factor.fill_(float("nan"))
        return step(*args)

    trainer.compiled_step = counting
    with pytest.raises(blocks.TrainingError,
                       match=r"loss became nan at epoch 2, step 3 \(global step 13\)"):
        trainer.fit((x, y))
    assert seen["calls"] == 20  # found at the epoch's end check: steps 14..20 were skipped too
    for name, before in snapshot["model"].items():
        assert torch.equal(model.state_dict()[name], before), name
    for p, state in trainer.optimizer.state.items():
        for key, before in snapshot["optimizer"][id(p)].items():
            assert torch.equal(state[key], before), key
    assert trainer.global_step == 12
    assert trainer.optimizer.param_groups[0]["lr"] == snapshot["lr"]


@pytest.mark.slow
def test_the_compiled_step_syncs_with_the_host_per_interval_not_per_step(count_syncs):  # noqa: F811
    counts = []
    for samples in (32, 320):  # 4 and 40 steps: one check interval either way
        x, y = learnable_data(samples)
        trainer = blocks.Trainer(blocks.build(mlp_spec(), seed=0),
                                 {"epochs": 2, "batch_size": 8, "compile": True}, quiet=True)
        trainer.spec = trainer.spec.model_copy(update={"epochs": 1})
        trainer.fit((x, y))  # compiles
        trainer.spec = trainer.spec.model_copy(update={"epochs": 2})
        before = count_syncs["n"]
        trainer.fit((x, y))
        counts.append(count_syncs["n"] - before)
    assert trainer.compiled_step is not None
    assert counts[0] == counts[1]


@pytest.mark.parametrize(("train", "why"), [
    ({"accumulate": 2}, r"gradient accumulation \(accumulate: 2\) is not compiled as one step"),
    ({"freeze": ["backbone"]}, r"frozen parameters \(freeze\) are not compiled as one step"),
])
def test_a_configuration_the_step_does_not_cover_compiles_the_forward_and_says_why(train, why):
    model = blocks.build(mlp_spec(), seed=0)
    with pytest.warns(TrainingWarning, match=rf"^train.compile: {why}; only the forward is compiled"):
        trainer = blocks.Trainer(model, {"batch_size": 8, "compile": True, **train}, quiet=True)
    assert trainer.compiled_step is None
    assert isinstance(trainer.compiled, CompiledForward)


def test_the_whole_step_is_compiled_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer = blocks.Trainer(blocks.build(mlp_spec(), seed=0), {"compile": True}, quiet=True)
    assert isinstance(trainer.compiled_step, compiled_step.CompiledStep)
    assert trainer.compiled is None


@pytest.mark.slow
def test_a_step_dynamo_cannot_trace_falls_back_to_the_compiled_forward():
    x, y = learnable_data(32)
    model = blocks.build(mlp_spec(), seed=0)
    model.register_forward_hook(lambda module, args, output: torch._dynamo.graph_break())
    trainer = blocks.Trainer(model, {"epochs": 1, "batch_size": 8, "compile": True}, quiet=True)
    with pytest.warns(TrainingWarning, match=r"^train.compile: the step cannot be traced as one "
                      r"graph \(.+\); only the forward is compiled"):
        trainer.fit((x, y))
    assert trainer.compiled_step is None and isinstance(trainer.compiled, CompiledForward)
    assert trainer.global_step == 4


@pytest.mark.parametrize("train", [{}, {"accumulate": 2}], ids=["whole-step", "forward-only"])
def test_a_platform_where_compiling_fails_gets_a_blocks_error_and_untouched_weights(monkeypatch, train):
    def broken(fn, **_):
        def call(*args):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")
        return call

    monkeypatch.setattr(compiled_step.torch, "compile", broken)  # the one torch module
    x, y = learnable_data(16)
    model = blocks.build(mlp_spec(), seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrainingWarning)  # accumulate: the forward only
        trainer = blocks.Trainer(model, {"epochs": 1, "batch_size": 4, "compile": True, **train},
                                 quiet=True)
    with pytest.raises(CompileError, match=r"^train.compile: torch.compile failed on "
                       r"this platform \(RuntimeError: InvalidCxxCompiler: No working C\+\+ "
                       r"compiler found\); set `compile: false` to train eagerly$"):
        trainer.fit((x, y))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    assert trainer.global_step == 0 and not trainer.optimizer.state


def test_the_cli_reports_a_platform_where_compiling_fails_with_exit_2(monkeypatch, recipe, tmp_path,  # noqa: F811
                                                                        capsys):
    def broken(fn, **_):
        def call(*args):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")
        return call

    monkeypatch.setattr(compiled_step.torch, "compile", broken)
    assert train(recipe, tmp_path / "run", "--set", "train.compile=true") == 2
    err = capsys.readouterr().err
    assert "train.compile: torch.compile failed on this platform" in err
    assert "set `compile: false` to train eagerly" in err and "Traceback" not in err


def test_compile_is_off_by_default_and_documented():
    assert blocks.TrainSpec().compile is False
    assert "torch.compile" in blocks.TrainSpec.model_fields["compile"].description
