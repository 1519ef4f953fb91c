"""The training step never waits for the device: host syncs are bounded per epoch, not per step,
and a non-finite loss still never changes the weights (it is skipped on the device)."""

from __future__ import annotations

import pytest
import torch
from trainkit import learnable_data, mlp_spec

import blocks
from blocks.train import nonfinite

SYNCING = ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__")


@pytest.fixture
def count_syncs(monkeypatch):
    """Count calls that make the host wait for a tensor's value."""
    calls = {"n": 0}
    for name in SYNCING:
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, **kwargs):
            calls["n"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    return calls


def syncs_in_one_epoch(count_syncs, samples: int, batch_size: int, **train) -> int:
    x, y = learnable_data(samples)
    trainer = blocks.Trainer(blocks.build(mlp_spec(), seed=0),
                             {"epochs": 1, "batch_size": batch_size, **train}, quiet=True)
    trainer._train_epoch(trainer_batches(trainer, x, y))  # warm: optimizer state, guard
    before = count_syncs["n"]
    trainer._train_epoch(trainer_batches(trainer, x, y))
    return count_syncs["n"] - before


def trainer_batches(trainer, x, y):
    from blocks.train.batches import make_batches

    return make_batches(trainer._prepared(x, y), trainer.spec.batch_size, shuffle=True,
                        drop_last=False, generator=trainer.generator, device=trainer.device)


@pytest.mark.parametrize("train", [{}, {"optimizer": {"type": "sgd", "momentum": 0.9}},
                                   {"accumulate": 2, "clip_grad_norm": 1.0}])
def test_host_syncs_per_epoch_do_not_grow_with_steps(count_syncs, train):
    few = syncs_in_one_epoch(count_syncs, 32, 8, **train)  # 4 steps (2 with accumulate)
    many = syncs_in_one_epoch(count_syncs, 320, 8, **train)  # 40 steps: still one interval
    assert many == few
    assert few <= 4, few  # the guard's flag, then loss, normaliser, accuracy at epoch end


def test_host_syncs_grow_only_with_check_intervals(count_syncs):
    per_interval = nonfinite.CHECK_EVERY
    one = syncs_in_one_epoch(count_syncs, 8 * per_interval, 8)
    three = syncs_in_one_epoch(count_syncs, 8 * 3 * per_interval, 8)
    assert three - one == 2  # one flag read per further interval


def test_evaluating_tensors_syncs_a_constant_number_of_times(count_syncs):
    trainer = blocks.Trainer(blocks.build(mlp_spec(), seed=0), {"batch_size": 8}, quiet=True)
    counts = []
    for samples in (16, 160):
        x, y = learnable_data(samples)
        before = count_syncs["n"]
        trainer.evaluate((x, y))
        counts.append(count_syncs["n"] - before)
    assert counts[0] == counts[1]


def _poison_forward_call(model, call: int, value: float, snapshots: dict):
    """At the model's `call`-th training forward, record the weights and optimizer state (those
    after the step before) and make the output non-finite."""
    seen = {"n": 0}

    def hook(module, args, output):
        if not module.training:
            return output
        seen["n"] += 1
        if seen["n"] == call:
            snapshots["model"] = {k: v.clone() for k, v in module.state_dict().items()}
            snapshots["lr"] = snapshots["trainer"].optimizer.param_groups[0]["lr"]
            snapshots["optimizer"] = {
                id(p): {k: v.clone() for k, v in s.items()}
                for p, s in snapshots["trainer"].optimizer.state.items()}
            return output * value
        return output

    return model.register_forward_hook(hook)


@pytest.mark.parametrize("optimizer", [{"type": "adam"}, {"type": "sgd", "momentum": 0.9},
                                       {"type": "adamw", "weight_decay": 0.1}])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_step_k_leaves_the_weights_of_step_k_minus_1(optimizer, value):
    x, y = learnable_data(40)  # 10 steps of 4 per epoch
    model = blocks.build(mlp_spec(), seed=0)
    trainer = blocks.Trainer(model, {"epochs": 3, "batch_size": 4, "optimizer": optimizer,
                                     "scheduler": {"type": "cosine"}}, quiet=True)
    snapshots = {"trainer": trainer}
    _poison_forward_call(model, 13, value, snapshots)  # epoch 2, step 3
    with pytest.raises(blocks.TrainingError,
                       match=r"loss became (nan|inf) at epoch 2, step 3 \(global step 13\)"):
        trainer.fit((x, y))
    for name, before in snapshots["model"].items():
        assert torch.equal(model.state_dict()[name], before), name
    for p, state in trainer.optimizer.state.items():
        for key, before in snapshots["optimizer"][id(p)].items():
            assert torch.equal(state[key], before), key
    assert trainer.global_step == 12
    assert trainer.epoch == 1
    assert trainer.optimizer.param_groups[0]["lr"] == snapshots["lr"]  # the schedule too
    assert trainer.scheduler.last_epoch == 12


def test_non_finite_first_step_leaves_no_optimizer_state_and_training_can_go_on():
    x, y = learnable_data(40)
    model = blocks.build(mlp_spec(), seed=0)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = blocks.Trainer(model, {"epochs": 1, "batch_size": 4,
                                     "optimizer": {"type": "sgd", "momentum": 0.9}}, quiet=True)
    handle = _poison_forward_call(model, 1, float("nan"), {"trainer": trainer})
    with pytest.raises(blocks.TrainingError, match=r"epoch 1, step 1 \(global step 1\)"):
        trainer.fit((x, y))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in initial.items())
    assert not trainer.optimizer.state  # no half-made momentum buffers
    handle.remove()
    trainer.fit((x, y))  # the flag was cleared: training trains again
    assert trainer.global_step == 10
    assert not all(torch.equal(model.state_dict()[k], v) for k, v in initial.items())


def test_non_finite_found_at_a_mid_epoch_check_names_its_step(monkeypatch):
    monkeypatch.setattr(nonfinite, "CHECK_EVERY", 4)
    x, y = learnable_data(80)  # 20 steps; checks after steps 4, 8, ...
    model = blocks.build(mlp_spec(), seed=0)
    trainer = blocks.Trainer(model, {"epochs": 1, "batch_size": 4}, quiet=True)
    seen = {"steps": 0}
    snapshots = {"trainer": trainer}
    _poison_forward_call(model, 6, float("inf"), snapshots)
    original_step = trainer._step

    def step(*args, **kwargs):
        seen["steps"] += 1
        return original_step(*args, **kwargs)

    trainer._step = step
    with pytest.raises(blocks.TrainingError, match=r"epoch 1, step 6 \(global step 6\)"):
        trainer.fit((x, y))
    assert seen["steps"] == 8  # stopped at the check after step 8, not at epoch end
