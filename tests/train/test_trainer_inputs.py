"""Trainer inputs (issue 9 part 6): numpy arrays and other dtypes, cast with a warning; a wrong
`train` key in a dict gets the same located did-you-mean as in a recipe file."""

from __future__ import annotations

import warnings

import pytest
import torch
import trainkit

import blocks
from blocks.train.inputs import DataCastWarning, DataTypeError


def test_numpy_float64_features_train_like_float32_tensors_with_a_warning():
    x, y = trainkit.learnable_data()
    spec = {"epochs": 2, "batch_size": 16, "seed": 0}
    reference = blocks.Trainer(blocks.build(trainkit.linear_spec(features=6), seed=0), spec,
                               quiet=True)
    want = reference.fit((x, y)).last
    model = blocks.build(trainkit.linear_spec(features=6), seed=0)
    with pytest.warns(DataCastWarning, match=r"^training data: features are torch.float64, the "
                      r"model takes torch.float32; cast them"):
        got = blocks.Trainer(model, spec, quiet=True).fit((x.double().numpy(), y.numpy())).last
    assert got["train/loss"] == want["train/loss"]
    assert torch.equal(model.head.weight, reference.model.head.weight)


def test_numpy_float32_and_lists_need_no_cast():
    x, y = trainkit.toy_data()
    model = blocks.build(trainkit.linear_spec(), seed=0)
    trainer = blocks.Trainer(model, {"epochs": 1}, quiet=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer.fit((x.numpy(), y.tolist()))
        metrics = trainer.evaluate((x.numpy(), y.numpy()))
    assert set(metrics) >= {"test/loss", "test/accuracy"}


def test_text_features_are_a_clear_error():
    model = blocks.build(trainkit.linear_spec(), seed=0)
    with pytest.raises(DataTypeError, match=r"^training data: features: an array of numbers is "
                       r"needed, got dtype <U1"):
        blocks.Trainer(model, {"epochs": 1}, quiet=True).fit(([["a"] * 4] * 3, [0, 1, 2]))


def test_a_wrong_train_key_in_a_dict_is_a_located_did_you_mean():
    model = blocks.build(trainkit.linear_spec(), seed=0)
    with pytest.raises(blocks.SpecError) as info:
        blocks.Trainer(model, {"epochs": 1, "optimizer": {"type": "adam", "lrr": 0.1}})
    assert str(info.value).startswith("train.optimizer.lrr: unknown key 'lrr'; did you mean 'lr'?")
    with pytest.raises(blocks.SpecError, match=r"^train.epoch: unknown key 'epoch'; did you mean "
                       r"'epochs'\?"):
        blocks.Trainer(model, {"epoch": 1})
