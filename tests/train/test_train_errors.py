"""Bad targets are refused before any step; a non-finite loss stops training cleanly."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset
from trainkit import learnable_data, linear_spec, mlp_spec

import blocks


def two_heads():
    return blocks.build(blocks.ModelSpec(input={"shape": [4]}, heads={
        "kind": {"type": "softmax", "classes": 3},
        "tags": {"type": "sigmoid", "classes": 2}}), seed=0)


def good_targets(n=8):
    return {"kind": torch.arange(n) % 3, "tags": (torch.arange(2 * n).reshape(n, 2) % 2).float()}


def assert_refused_before_any_step(model, x, y, *patterns):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = blocks.Trainer(model, {"epochs": 1, "batch_size": 4}, quiet=True)
    with pytest.raises(blocks.TrainingError) as info:
        trainer.fit((x, y))
    message = str(info.value)
    for pattern in patterns:
        assert pattern in message, message
    assert trainer.global_step == 0
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    return message


def test_class_index_out_of_range_names_head_sample_and_value():
    y = good_targets()
    y["kind"][5] = 3
    assert_refused_before_any_step(two_heads(), torch.randn(8, 4), y,
                                   "'kind'", "sample 5 has 3", "[0, 2]")


def test_negative_class_index():
    x = torch.randn(8, 4)
    y = torch.tensor([0, 1, 2, 0, -1, 1, 2, 0])
    assert_refused_before_any_step(blocks.build(linear_spec(), seed=0), x, y,
                                   "softmax", "sample 4 has -1")


def test_fractional_class_id_is_not_truncated():
    y = torch.tensor([0.0, 1.0, 2.0, 1.5, 0.0, 1.0, 2.0, 0.0])
    assert_refused_before_any_step(blocks.build(linear_spec(), seed=0), torch.randn(8, 4), y,
                                   "integer class ids", "sample 3 has 1.5")
    ok = torch.tensor([0.0, 1.0, 2.0, 1.0])  # whole-number floats are fine
    blocks.Trainer(blocks.build(linear_spec(), seed=0), {"epochs": 1}, quiet=True).fit(
        (torch.randn(4, 4), ok))


def test_sigmoid_target_outside_0_1():
    y = good_targets()
    y["tags"][2, 1] = 1.5
    assert_refused_before_any_step(two_heads(), torch.randn(8, 4), y,
                                   "'tags'", "sample 2, label 1 is 1.5")


def test_wrong_feature_shape():
    assert_refused_before_any_step(two_heads(), torch.randn(8, 5), good_targets(),
                                   "per-sample shape [5]", "expects [4]")


def test_missing_head_in_targets():
    y = good_targets()
    del y["tags"]
    assert_refused_before_any_step(two_heads(), torch.randn(8, 4), y, "tags")


def test_single_tensor_for_a_multi_head_model():
    assert_refused_before_any_step(two_heads(), torch.randn(8, 4), torch.zeros(8, dtype=torch.long),
                                   "kind", "tags")


def test_bad_validation_targets_are_refused_before_training():
    model = blocks.build(linear_spec(), seed=0)
    trainer = blocks.Trainer(model, {"epochs": 1}, quiet=True)
    with pytest.raises(blocks.TrainingError, match="validation data.*sample 1 has 7"):
        trainer.fit((torch.randn(8, 4), torch.zeros(8, dtype=torch.long)),
                    (torch.randn(3, 4), torch.tensor([0, 7, 1])))
    assert trainer.global_step == 0


def test_nan_feature_stops_with_epoch_and_step_and_keeps_the_checkpoint(tmp_path):
    """A Dataset is not checked up front: the NaN loss stops training at its step."""
    x, y = learnable_data(40)
    spec = {"epochs": 1, "batch_size": 8, "shuffle": False}
    model = blocks.build(mlp_spec(), seed=0)
    blocks.Trainer(model, spec, run_dir=tmp_path, quiet=True).fit((x, y))
    ckpt = tmp_path / "checkpoint.safetensors"
    saved = ckpt.read_bytes()
    bad = x.clone()
    bad[27, 3] = float("nan")  # in the 4th batch of 8
    trainer = blocks.Trainer(model, {**spec, "epochs": 3}, run_dir=tmp_path, quiet=True)
    with pytest.raises(blocks.TrainingError, match=r"at epoch 2, step 4 \(global step 9\)") as info:
        trainer.fit(TensorDataset(bad, y), resume=True)
    assert "nan" in str(info.value)
    assert ckpt.read_bytes() == saved
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []
    for name, value in model.state_dict().items():
        assert torch.isfinite(value).all(), name


def test_exploding_learning_rate_stops_training(tmp_path):
    x, y = learnable_data(64)
    model = blocks.build(mlp_spec(), seed=0)
    trainer = blocks.Trainer(model, {"epochs": 5, "batch_size": 8,
                                     "optimizer": {"type": "sgd", "lr": 1e30}},
                             run_dir=tmp_path, quiet=True)
    with pytest.raises(blocks.TrainingError, match=r"at epoch \d+, step \d+"):
        trainer.fit((x, y))
    assert trainer.epoch < 5
