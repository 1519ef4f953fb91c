"""Ordinary data never crashes training: a lone last sample under batchnorm, NaN in any split."""

from __future__ import annotations

import warnings

import pytest
import torch
import yaml

import blocks
from blocks.cli import main
from blocks.train.guards import single_value_batchnorm
from blocks.train.trainer import TrainingError, TrainingWarning


def bn_spec(**extra) -> blocks.ModelSpec:
    return blocks.ModelSpec(input={"shape": [5]},
                            backbone=[{"type": "linear", "out_features": 8}, "batchnorm1d", "relu"],
                            head={"type": "softmax", "classes": 2}, **extra)


def data(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g), torch.randint(0, 2, (n,), generator=g)


def test_a_lone_last_sample_under_batchnorm_is_left_out_with_a_warning():
    model = blocks.build(bn_spec(), seed=0)
    trainer = blocks.Trainer(model, {"epochs": 2, "batch_size": 4}, quiet=True)
    with pytest.warns(TrainingWarning, match=r"last training batch would hold 1 sample \(9 = 2 x 4 \+ 1\) "
                      r"and model.backbone\[1\] \(batchnorm1d\) cannot normalise a batch of one"):
        history = trainer.fit(data(9))
    assert len(history) == 2 and trainer.global_step == 4  # two full batches per epoch
    assert history[-1]["train/loss"] == history[-1]["train/loss"]  # finite, not NaN


def test_no_warning_when_nothing_is_left_over_or_no_batchnorm_needs_it():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        blocks.Trainer(blocks.build(bn_spec(), seed=0), {"epochs": 1, "batch_size": 4},
                       quiet=True).fit(data(10))  # last batch of 2: fine
        plain = blocks.ModelSpec(input={"shape": [5]}, head={"type": "softmax", "classes": 2})
        trainer = blocks.Trainer(blocks.build(plain, seed=0), {"epochs": 1, "batch_size": 4}, quiet=True)
        trainer.fit(data(9))
        assert trainer.global_step == 3  # the lone sample trains: no batchnorm


def test_batchnorm_over_space_is_not_a_single_value_per_channel():
    conv = blocks.ModelSpec(input={"shape": [1, 4, 4]}, backbone=[
        {"type": "conv2d", "out_channels": 2, "kernel_size": 3}, "batchnorm2d", "flatten"],
        head={"type": "softmax", "classes": 2})
    assert single_value_batchnorm(blocks.build(conv)) is None
    assert single_value_batchnorm(blocks.build(bn_spec())) == "model.backbone[1] (batchnorm1d)"


def test_batch_size_one_under_batchnorm_is_refused_before_the_first_step():
    model = blocks.build(bn_spec(), seed=0)
    trainer = blocks.Trainer(model, {"epochs": 1, "batch_size": 1}, quiet=True)
    with pytest.raises(TrainingError, match=r"model.backbone\[1\] \(batchnorm1d\) normalises one value "
                       r"per channel, which needs at least 2 samples per batch in training; "
                       r"batch_size is 1 .* use batch_size 2 or more"):
        trainer.fit(data(6))
    assert trainer.global_step == 0


@pytest.mark.parametrize("split", ["training", "validation"])
def test_non_finite_features_are_refused_in_every_split_with_row_and_column(split):
    x, y = data(12)
    bad = x.clone()
    bad[7, 3] = float("inf")
    bad[9, 0] = float("nan")
    trainer = blocks.Trainer(blocks.build(bn_spec(), seed=0), {"epochs": 1, "batch_size": 4}, quiet=True)
    train, val = ((bad, y), (x, y)) if split == "training" else ((x, y), (bad, y))
    with pytest.raises(TrainingError, match=rf"^{split} data: sample 7, feature 3 is inf \(2 samples "
                       r"with NaN or inf\); fill in or drop missing values first$"):
        trainer.fit(train, val)
    assert trainer.global_step == 0
    with pytest.raises(TrainingError, match=r"test data: sample 7, feature 3 is inf"):
        trainer.evaluate((bad, y))


@pytest.mark.slow
def test_tabular_mlp_with_batch_size_2_trains_to_the_end(tmp_path, capsys):
    """455 training samples in batches of 2: the last one would crash batchnorm mid-epoch."""
    recipe = yaml.safe_load(blocks.bundled_recipes()["tabular_mlp"].read_text())
    recipe["train"].update(batch_size=2, epochs=1)
    path = tmp_path / "bn.yaml"
    path.write_text(yaml.safe_dump(recipe))
    with pytest.warns(TrainingWarning, match=r"455 = 227 x 2 \+ 1"):
        code = main(["train", str(path), "--out", str(tmp_path / "run"), "--quiet", "--no-plots"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "run" / "model.safetensors").exists()
