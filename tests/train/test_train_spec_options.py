"""Every `train:` option does what it says."""

from __future__ import annotations

import math

import pytest
import torch
from trainkit import learnable_data, linear_spec, mlp_spec

import blocks

TRAIN, VAL = learnable_data(96), learnable_data(32, seed=1)


def strip_time(history):
    return [{k: v for k, v in r.items() if k != "time"} for r in history]


@pytest.mark.parametrize(("optimizer", "cls"), [
    ({"type": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True}, torch.optim.SGD),
    ({"type": "adam", "lr": 0.01, "betas": [0.8, 0.99]}, torch.optim.Adam),
    ({"type": "adamw", "lr": 0.01, "weight_decay": 0.05}, torch.optim.AdamW),
])
def test_optimizers_train(optimizer, cls):
    model = blocks.build(mlp_spec(), seed=0)
    trainer = blocks.Trainer(model, {"epochs": 6, "batch_size": 16, "optimizer": optimizer}, quiet=True)
    assert type(trainer.optimizer) is cls
    group = trainer.optimizer.param_groups[0]
    for key, value in optimizer.items():
        if key != "type":
            assert group[key] == (tuple(value) if isinstance(value, list) else value)
    losses = trainer.fit(TRAIN).metric("train/loss")
    assert losses[-1] < losses[0]


def test_step_scheduler_is_per_epoch():
    model = blocks.build(linear_spec(features=6), seed=0)
    spec = {"epochs": 4, "batch_size": 32, "optimizer": {"type": "sgd", "lr": 0.1},
            "scheduler": {"type": "step", "step_size": 2, "gamma": 0.5}}
    history = blocks.Trainer(model, spec, quiet=True).fit(TRAIN)
    assert history.metric("lr") == pytest.approx([0.1, 0.1, 0.05, 0.05])


def test_cosine_scheduler_is_per_step_and_ends_at_eta_min():
    model = blocks.build(linear_spec(features=6), seed=0)
    spec = {"epochs": 3, "batch_size": 32, "optimizer": {"type": "sgd", "lr": 0.1},
            "scheduler": {"type": "cosine", "eta_min": 0.001}}
    trainer = blocks.Trainer(model, spec, quiet=True)
    lrs = trainer.fit(TRAIN).metric("lr")  # recorded after each epoch's 3 steps
    total = 9
    expected = [0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi * s / total)) / 2 for s in (3, 6, 9)]
    assert lrs == pytest.approx(expected)


def test_one_cycle_warms_up_then_anneals():
    model = blocks.build(linear_spec(features=6), seed=0)
    spec = {"epochs": 5, "batch_size": 16, "optimizer": {"type": "adam", "lr": 0.01},
            "scheduler": {"type": "one_cycle", "max_lr": 0.05, "pct_start": 0.3}}
    trainer = blocks.Trainer(model, spec, quiet=True)
    seen = []
    trainer.optimizer.register_step_pre_hook(
        lambda opt, a, k: seen.append(opt.param_groups[0]["lr"]))
    trainer.fit(TRAIN)
    assert len(seen) == 5 * 6
    peak = seen.index(max(seen))
    assert max(seen) == pytest.approx(0.05, rel=1e-3)
    assert 0 < peak < len(seen) - 1
    assert seen[0] < 0.05 / 10 and seen[-1] < seen[0]


def test_clip_grad_norm_bounds_the_gradient():
    model = blocks.build(mlp_spec(), seed=0)
    spec = {"epochs": 1, "batch_size": 16, "clip_grad_norm": 0.01,
            "optimizer": {"type": "sgd", "lr": 0.1}}
    trainer = blocks.Trainer(model, spec, quiet=True)
    norms = []

    def hook(optimizer, args, kwargs):
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

    trainer.optimizer.register_step_pre_hook(hook)
    trainer.fit(TRAIN)
    assert len(norms) == 6
    assert max(norms) <= 0.01 * (1 + 1e-5)
    assert min(norms) > 0.009  # the unclipped gradients are far larger: each one was clipped


def test_bf16_precision_runs_on_cpu():
    model = blocks.build(mlp_spec(), seed=0)
    trainer = blocks.Trainer(model, {"epochs": 3, "batch_size": 16, "precision": "bf16",
                                     "optimizer": {"type": "adam", "lr": 0.01}}, quiet=True)
    history = trainer.fit(TRAIN, VAL)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast, fp32 master weights
    assert all(math.isfinite(v) for v in history.metric("train/loss"))
    assert history.metric("train/loss")[-1] < history.metric("train/loss")[0]


def test_early_stopping_stops_and_restores_best():
    model = blocks.build(mlp_spec(), seed=0)
    # lr so large that validation loss gets worse after the first epochs
    spec = {"epochs": 30, "batch_size": 8, "optimizer": {"type": "sgd", "lr": 3.0},
            "early_stopping": {"metric": "val/loss", "patience": 2, "restore_best": True}}
    states = []
    trainer = blocks.Trainer(model, spec, quiet=True, callbacks=[
        lambda t, r: states.append({k: v.clone() for k, v in t.model.state_dict().items()})])
    history = trainer.fit(TRAIN, VAL)
    assert trainer.stopped_early
    assert len(history) < 30
    best = history.best("val/loss", "min")
    assert trainer.best["epoch"] == best["epoch"]
    assert len(history) == best["epoch"] + 2  # patience 2
    for name, value in model.state_dict().items():
        assert torch.equal(value, states[best["epoch"] - 1][name]), name
    again = blocks.Trainer(model, {"batch_size": 8}, quiet=True).evaluate(VAL, split="val")
    assert again["val/loss"] == pytest.approx(best["val/loss"], abs=1e-6)


def test_early_stopping_on_accuracy_uses_max_mode():
    spec = blocks.TrainSpec(early_stopping={"metric": "val/accuracy"})
    assert spec.early_stopping.resolved_mode == "max"
    trainer = blocks.Trainer(blocks.build(mlp_spec(), seed=0),
                             {"epochs": 2, "early_stopping": {"metric": "val/nope"}}, quiet=True)
    with pytest.raises(blocks.TrainingError, match="val/nope"):
        trainer.fit(TRAIN, VAL)


def test_drop_last():
    for drop_last, steps in ((True, 9), (False, 10)):
        model = blocks.build(linear_spec(features=6), seed=0)
        trainer = blocks.Trainer(model, {"epochs": 1, "batch_size": 10, "drop_last": drop_last},
                                 quiet=True)
        sizes = []
        model.register_forward_hook(lambda m, i, o, sizes=sizes: sizes.append(len(o)))
        trainer.fit(TRAIN)
        assert trainer.global_step == steps
        assert sizes == [10] * 9 + ([] if drop_last else [6])


def test_shuffle_false_sees_data_in_order_every_epoch():
    x = torch.arange(12, dtype=torch.float32).repeat(6, 1).T.contiguous()
    y = torch.arange(12) % 3
    model = blocks.build(linear_spec(features=6), seed=0)
    firsts = []
    model.register_forward_hook(lambda m, i, o: firsts.append(i[0][:, 0].tolist()))
    blocks.Trainer(model, {"epochs": 2, "batch_size": 5, "shuffle": False}, quiet=True).fit((x, y))
    order = [v for batch in firsts for v in batch]
    assert order == list(range(12)) * 2


def test_shuffle_reorders_with_the_seed():
    x = torch.arange(12, dtype=torch.float32).repeat(6, 1).T.contiguous()
    y = torch.arange(12) % 3
    orders = []
    for seed in (0, 0, 1):
        model = blocks.build(linear_spec(features=6), seed=0)
        seen = []
        model.register_forward_hook(lambda m, i, o, seen=seen: seen.extend(i[0][:, 0].tolist()))
        blocks.Trainer(model, {"epochs": 1, "batch_size": 5, "seed": seed}, quiet=True).fit((x, y))
        orders.append(seen)
    assert orders[0] == orders[1] != orders[2]
    assert sorted(orders[0]) == list(range(12)) and orders[0] != list(range(12))


def test_same_seed_gives_identical_history_and_weights():
    runs = []
    for _ in range(2):
        model = blocks.build(mlp_spec(), seed=0)  # dropout: in-model randomness is seeded too
        history = blocks.Trainer(model, {"epochs": 3, "batch_size": 16, "seed": 5},
                                 quiet=True).fit(TRAIN, VAL)
        runs.append((strip_time(history), model.state_dict()))
    assert runs[0][0] == runs[1][0]
    for name in runs[0][1]:
        assert torch.equal(runs[0][1][name], runs[1][1][name])


def test_train_spec_is_strict():
    with pytest.raises(ValueError, match="lr"):
        blocks.TrainSpec(optimizer={"type": "sgd", "lr": -1})
    with pytest.raises(ValueError, match="extra|not permitted"):
        blocks.TrainSpec(epoch=3)
    with pytest.raises(ValueError):
        blocks.TrainSpec(precision="fp16")
