"""The search space: parsing, located errors, checks against the recipe before any trial."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import blocks
from blocks.cli import EXIT_BAD_INPUT, main
from blocks.core.errors import SpecError
from blocks.sweeps.space import load_space, space_problems, trial_recipe

RECIPE = Path(__file__).with_name("digits_mlp.yaml")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    """What `blocks sweep` prints for this space, one line per problem."""
    space = write(tmp_path, text)
    with pytest.raises(SpecError) as err:
        blocks.sweep(RECIPE, space, trials=1, out=tmp_path / "sweep")
    assert not (tmp_path / "sweep").exists()  # refused before anything is written
    return [str(p).replace(str(space), "space.yaml") for p in err.value.problems]


def test_every_kind_parses_with_its_options(tmp_path):
    space = load_space(write(tmp_path, """
train.optimizer.lr: {log_uniform: [1e-4, 1e-1]}
model.backbone[0].out_features: {choice: [16, 32]}
train.optimizer.weight_decay: {uniform: [0.0, 0.1], step: 0.05}
train.batch_size: {int: [16, 64], step: 16}
train.epochs: {int: [1, 8], log: true}
train.scheduler: {choice: [{type: cosine}, null]}
"""))
    assert space.describe() == {
        "train.optimizer.lr": {"log_uniform": [1e-4, 1e-1]},  # 1e-4 is the number it means
        "model.backbone[0].out_features": {"choice": [16, 32]},
        "train.optimizer.weight_decay": {"uniform": [0.0, 0.1], "step": 0.05},
        "train.batch_size": {"int": [16, 64], "step": 16},
        "train.epochs": {"int": [1, 8], "log": True},
        "train.scheduler": {"choice": [{"type": "cosine"}, None]},
    }
    assert space.params[1].path == ("model", "backbone", 0, "out_features")
    assert (space.params[1].line, space.params[1].column) == (3, 1)
    assert space_problems(blocks.load_recipe(RECIPE), space) == []


def test_shape_and_recipe_problems_are_located_and_reported_together(tmp_path):
    assert problems(tmp_path, """\
train.optimizer.lrr: {log_uniform: [1e-4, 1e-1]}
model.backbone[0].out_feature: {choice: [16, 64]}
train.epochs: {uniform: [1, 5]}
model.backbone[0].out_features: {int: [0, 64]}
train.batch_size: {int: [16, 100], step: 16}
train.seed: {normal: [1, 2]}
model.backbone[5].p: {uniform: [0, 1]}
train.optimizer.type: {choice: [sgd, sgdd]}
""") == [
        "space.yaml:1:1: train.optimizer.lrr: unknown key 'lrr'; did you mean 'lr'? (valid: lr, "
        "weight_decay, momentum, nesterov)",
        "space.yaml:2:1: model.backbone[0].out_feature: unknown key 'out_feature'; did you mean "
        "'out_features'? (valid: out_features, bias)",
        # a float between the bounds is what an integer key refuses (both bounds are whole)
        "space.yaml:3:1: train.epochs: Input should be a valid integer, got float 1.0 (when the "
        "sweep draws train.epochs=1.0)",
        "space.yaml:4:1: model.backbone[0].out_features: Input should be greater than 0 (when "
        "the sweep draws model.backbone[0].out_features=0)",
        "space.yaml:5:30: train.batch_size: high 100 is not low 16 plus a whole number of steps 16",
        "space.yaml:6:1: train.seed: expected exactly one of log_uniform, uniform, int, choice, "
        "got normal",
        "space.yaml:7:1: model.backbone: has 2 entries, no [5]",
        "space.yaml:8:1: train.optimizer: unknown type 'sgdd'; did you mean 'sgd'? (valid: sgd, "
        "adam, adamw) (when the sweep draws train.optimizer.type='sgdd')",
    ]


@pytest.mark.parametrize(("text", "message"), [
    ("a..b: {uniform: [0, 1]}", "space.yaml:1:1: a..b: 'a..b' is not a key path like "
     "train.optimizer.lr or model.backbone[0].out_channels"),
    ("train.optimizer.lr: {log_uniform: [0, 1]}", "space.yaml:1:36: train.optimizer.lr: a log "
     "scale needs low > 0, got 0"),
    ("train.optimizer.lr: {uniform: [0.5, 0.1]}", "space.yaml:1:31: train.optimizer.lr: low 0.5 "
     "is above high 0.1"),
    ("train.epochs: {int: [1, 2.5]}", "space.yaml:1:25: train.epochs: high must be an integer, "
     "got 2.5"),
    ("train.epochs: {int: [1, 8], step: 2, log: true}", "space.yaml:1:35: train.epochs: step and "
     "log cannot be combined (Optuna draws either on a grid or on a log scale)"),
    ("train.epochs: {choice: []}", "space.yaml:1:24: train.epochs: choice takes a non-empty list "
     "of values, e.g. {choice: [32, 64]}"),
    ("train.epochs: {choice: [1, 1]}", "space.yaml:1:24: train.epochs: choice lists a value twice"),
    ("train.epochs: {int: [1, 4], steps: 2}", "space.yaml:1:36: train.epochs: int takes step, "
     "log, not steps"),
    ("train.epochs: [1, 4]", "space.yaml:1:1: train.epochs: expected a distribution such as "
     "{log_uniform: [1e-4, 1e-1]}, got [1, 4]; one of: log_uniform, uniform, int, choice"),
    ("model.head.classes: {choice: [10, 3]}", "space.yaml:1:1: model.head.classes: digits has 10 "
     "classes, so the softmax head needs classes: 10 (when the sweep draws model.head.classes=3)"),
])
def test_one_bad_entry(tmp_path, text, message):
    assert problems(tmp_path, text + "\n") == [message]


def test_keys_that_only_fail_together_are_caught_at_the_corners(tmp_path):
    # each alone is fine (the other kernel is 1x1); a 4x4 kernel after a 6x6 one on 8x8 is not
    recipe = tmp_path / "cnn.yaml"
    recipe.write_text("""
model:
  input: {shape: [1, 8, 8]}
  backbone:
    - {type: conv2d, out_channels: 4, kernel_size: 1}
    - {type: conv2d, out_channels: 4, kernel_size: 1}
    - flatten
  head: {type: softmax, classes: 10}
data: {dataset: digits}
""")
    space = write(tmp_path, "model.backbone[0].kernel_size: {int: [1, 6]}\n"
                            "model.backbone[1].kernel_size: {int: [1, 4]}\n")
    with pytest.raises(SpecError) as err:
        blocks.sweep(recipe, space, trials=1, out=tmp_path / "sweep")
    assert [str(p).replace(str(space), "space.yaml") for p in err.value.problems] == [
        "space.yaml: model.backbone[1]: conv2d with input shape [4, 3, 3]: kernel size 4 is larger "
        "than its padded input 3 (input 3, padding 0) (when the sweep draws "
        "model.backbone[0].kernel_size=6, model.backbone[1].kernel_size=4)"]


def test_changing_a_type_drops_the_old_types_defaults(tmp_path):
    # sgd's momentum/nesterov defaults are not carried over to adam (same for --set)
    recipe = trial_recipe(blocks.load_recipe(RECIPE), load_space(
        {"train.optimizer.type": {"choice": ["sgd", "adam"]}}), {"train.optimizer.type": "adam"})
    assert recipe.train.optimizer.type == "adam" and recipe.train.optimizer.lr == 0.01


def test_the_cli_exits_2_without_a_traceback(tmp_path, capsys):
    space = write(tmp_path, "train.optimizer.lrr: {log_uniform: [1e-4, 1e-1]}\n")
    code = main(["sweep", str(RECIPE), "--space", str(space), "--trials", "2",
                 "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert err == (f"error: {space}:1:1: train.optimizer.lrr: unknown key 'lrr'; did you mean "
                   "'lr'? (valid: lr, weight_decay, momentum, nesterov)\n")
    code = main(["sweep", str(RECIPE), "--space", str(tmp_path / "none.yaml"), "--trials", "2"])
    assert code == EXIT_BAD_INPUT
    assert capsys.readouterr().err == f"error: {tmp_path / 'none.yaml'}: no such space file\n"


def test_a_metric_that_is_not_recorded(tmp_path, capsys):
    space = write(tmp_path, "train.optimizer.lr: {log_uniform: [1e-4, 1e-1]}\n")
    assert main(["sweep", str(RECIPE), "--space", str(space), "--trials", "2", "--metric",
                 "val/acuracy", "--out", str(tmp_path / "s")]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err == (
        "error: --metric: 'val/acuracy' is not a metric blocks records; did you mean "
        "'val/accuracy'? choose one of: train/accuracy, train/loss, val/accuracy, val/loss\n")


def test_without_optuna_the_message_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` raises ImportError
    space = write(tmp_path, "train.optimizer.lr: {log_uniform: [1e-4, 1e-1]}\n")
    assert main(["sweep", str(RECIPE), "--space", str(space), "--trials", "2",
                 "--out", str(tmp_path / "s")]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err == ("error: sweeps need Optuna, which is not installed: "
                                       "pip install 'blocks[sweep]'\n")
    assert not (tmp_path / "s").exists()
