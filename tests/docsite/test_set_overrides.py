"""`blocks train RECIPE --set KEY=VALUE`: any recipe key, validated and located like the file's."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import blocks
from blocks.cli import EXIT_BAD_INPUT, main
from blocks.recipe.overrides import apply_sets, parse_set

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from test_train_cli import RECIPE  # noqa: E402
from test_train_cli import recipe as recipe  # noqa: E402, F401 - the fixture


def test_sets_reach_the_runs_recipe_yaml(recipe, tmp_path):
    out = tmp_path / "run"
    assert main(["train", str(recipe), "--out", str(out), "--quiet", "--no-plots",
                 "--set", "train.optimizer.lr=3e-4", "--set", "train.epochs=1",
                 "--set", "model.backbone[0].out_features=5", "--set", "train.scheduler=cosine"]) == 0
    saved = blocks.load_recipe(out / "recipe.yaml")
    assert saved.train.optimizer.lr == 3e-4 and saved.train.epochs == 1
    assert saved.model.backbone[0].out_features == 5
    assert saved.train.scheduler.type == "cosine"
    assert blocks.load(out).spec.backbone[0].out_features == 5
    assert "lr: 0.02" in recipe.read_text()  # the recipe file itself is untouched


@pytest.mark.parametrize(("flag", "message"), [
    ("train.optimizer.lrr=3e-4", "error: --set train.optimizer.lrr=3e-4: train.optimizer.lrr: "
     "unknown key 'lrr'; did you mean 'lr'? (valid: lr, weight_decay, betas, eps)"),
    ("trian.epochs=2", "error: --set trian.epochs=2: trian: unknown key 'trian'; did you mean "
     "'train'? (valid: model, data, train)"),
    ("train.epochs=0", "error: --set train.epochs=0: train.epochs: Input should be greater than 0"),
    ("model.backbone[7].out_features=3", "error: --set model.backbone[7].out_features=3: "
     "model.backbone: has 2 entries, no [7]"),
    ("train.optimizer.lr", "error: --set train.optimizer.lr: expected KEY=VALUE, e.g. "
     "--set train.optimizer.lr=3e-4"),
    ("model..head=1", "error: --set model..head=1: 'model..head' is not a key path like "
     "train.optimizer.lr or model.backbone[0].out_channels"),
])
def test_bad_sets_exit_2_with_the_flag_named(recipe, tmp_path, capsys, flag, message):
    assert main(["train", str(recipe), "--out", str(tmp_path / "run"), "--set", flag]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err.strip() == message
    assert not (tmp_path / "run").exists()


def test_a_set_that_breaks_shapes_elsewhere_names_every_flag():
    recipe = blocks.load_recipe(RECIPE.replace("table.csv", "none.csv"))
    with pytest.raises(blocks.SpecError) as err:
        apply_sets(recipe, ["model.input.shape=[3, 8, 8]", "train.epochs=2"])
    assert str(err.value) == (
        "--set model.input.shape=[3, 8, 8], --set train.epochs=2: model.head: a classifier head "
        "needs a flat feature vector, but the backbone ends with shape [3, 8, 8]; end it with "
        "`flatten` or `global_avgpool`")


@pytest.mark.parametrize(("text", "expected"), [
    ("train.optimizer.lr=3e-4", (("train", "optimizer", "lr"), 3e-4)),
    ("model.backbone[0].kernel_size=[3, 3]", (("model", "backbone", 0, "kernel_size"), [3, 3])),
    ("model.backbone.1.type=gelu", (("model", "backbone", 1, "type"), "gelu")),
    ("train.shuffle=false", (("train", "shuffle"), False)),
    ("model.name=1e3x", (("model", "name"), "1e3x")),
])
def test_values_are_yaml_with_scientific_numbers(text, expected):
    assert parse_set(text) == expected


def test_a_bare_block_gets_keys():
    recipe = blocks.load_recipe(RECIPE.replace("table.csv", "none.csv"))
    updated = apply_sets(recipe, ["model.backbone[1].type=leaky_relu",
                                  "model.backbone[1].negative_slope=0.2"])
    assert updated.model.backbone[1].negative_slope == 0.2
