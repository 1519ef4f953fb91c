"""Messages a new user meets, word for word (issue: "error wording found by a new user")."""

from __future__ import annotations

import pytest

import blocks

HEAD = "  head: {type: softmax, classes: 3}\n"


def message(text: str) -> str:
    with pytest.raises(blocks.SpecError) as err:
        blocks.load_recipe(text)
    return str(err.value)


def test_one_typo_is_one_error():
    text = ("model:\n  input: {shape: [1, 8, 8]}\n  backbone:\n"
            "    - {type: conv2d, out_chanels: 4, kernel_size: 3}\n    - flatten\n" + HEAD)
    assert message(text) == (
        "<string>:4:22: model.backbone[0].out_chanels: unknown key 'out_chanels'; did you mean "
        "'out_channels'? (valid: out_channels, kernel_size, stride, padding, dilation, groups, "
        "bias, padding_mode)")


def test_a_missing_key_without_a_near_typo_is_still_reported():
    text = ("model:\n  input: {shape: [1, 8, 8]}\n  backbone:\n"
            "    - {type: conv2d, kernel_size: 3, bias_x: true}\n    - flatten\n" + HEAD)
    assert message(text).splitlines() == [
        "<string>:4:7: model.backbone[0].out_channels: missing required key 'out_channels'",
        "<string>:4:38: model.backbone[0].bias_x: unknown key 'bias_x'; did you mean 'bias'? "
        "(valid: out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode)"]


def test_unknown_block_type_suggests_the_closest_few_once():
    text = "model:\n  input: {shape: [4]}\n  backbone: [relu, {type: conv}]\n" + HEAD
    assert message(text) == (
        "<string>:3:20: model.backbone[1]: unknown block type 'conv'; did you mean 'conv2d', "
        "'conv1d' or 'text_conv'? (`blocks blocks` lists all "
        f"{len(blocks.block_types())})")


def test_block_without_type():
    text = "model:\n  input: {shape: [4]}\n  backbone: [{typ: linear, out_features: 3}]\n" + HEAD
    assert message(text) == ("<string>:3:14: model.backbone[0]: block has no `type`; did you "
                             "mean `type` instead of `typ`?")


def test_yaml_tab_says_what_to_do():
    text = "model:\n  input: {shape: [4]}\n" + HEAD + "train:\n\tepochs: 3\n"
    assert message(text) == ("<string>:5:1: invalid YAML: a tab character: YAML indents with "
                             "spaces only; replace the tab with spaces (set your editor to insert "
                             "spaces for .yaml files)")


def test_yaml_bad_indentation_says_what_to_check():
    text = "model:\n  input: {shape: [4]}\n  head:\n  type: softmax\n   classes: 3\n"
    assert message(text) == (
        "<string>:5:11: invalid YAML: mapping values are not allowed here; check the indentation "
        "of this line and the one above (a nested key needs more spaces than its parent)")


def test_bare_scheduler_and_optimizer_names_work_like_bare_blocks():
    recipe = blocks.load_recipe("model:\n  input: {shape: [4]}\n" + HEAD +
                                "train: {scheduler: cosine, optimizer: adamw}\n")
    assert recipe.train.scheduler == blocks.load_recipe(
        "model:\n  input: {shape: [4]}\n" + HEAD + "train: {scheduler: {type: cosine}}\n").train.scheduler
    assert recipe.train.optimizer.type == "adamw"
    assert message("model:\n  input: {shape: [4]}\n" + HEAD + "train: {scheduler: cosin}\n") == (
        "<string>:4:20: train.scheduler: unknown type 'cosin'; did you mean 'cosine'? "
        "(valid: step, cosine, one_cycle)")


def test_enum_values_get_did_you_mean():
    text = "model:\n  input: {shape: [64]}\n  head: {type: softmax, classes: 10}\ndata: {dataset: digit}\n"
    assert message(text) == ("<string>:4:17: data.dataset: Input should be 'digits', "
                             "'breast_cancer', 'iris' or 'wine', got 'digit'; did you mean 'digits'?")
    text = "model:\n  input: {shape: [4]}\n" + HEAD + "train: {precision: bf61}\n"
    assert message(text) == ("<string>:4:20: train.precision: Input should be 'fp32' or 'bf16', "
                             "got 'bf61'; did you mean 'bf16'?")


@pytest.mark.parametrize(("section", "shown"), [
    ("data: {csv: x.csv}", "<string>:4:13: data.csv: expected a mapping of keys (`key: value`), "
                           "got the string 'x.csv'"),
    ("train: {early_stopping: 3}", "<string>:4:25: train.early_stopping: expected a mapping of "
                                   "keys (`key: value`), got the number 3"),
    ("data: {synthetic: [1]}", "<string>:4:19: data.synthetic: expected a mapping of keys "
                               "(`key: value`), got a list"),
])
def test_no_internal_class_names(section, shown):
    text = message("model:\n  input: {shape: [4]}\n" + HEAD + section + "\n")
    assert text == shown
    for name in ("CsvSource", "EarlyStopping", "SyntheticSource", "instance of"):
        assert name not in text


def test_a_bare_head_name_shows_the_mapping():
    assert message("model:\n  input: {shape: [4]}\n  head: softmax\n") == (
        "<string>:3:9: model.head: a head needs its settings as a mapping, e.g. "
        "`{type: softmax, classes: 3}`")


def test_softmax_with_one_class_suggests_sigmoid():
    assert message("model:\n  input: {shape: [4]}\n  head: {type: softmax, classes: 1}\n") == (
        "<string>:3:34: model.head.classes: a softmax head needs at least 2 classes; for a binary "
        "(yes/no) problem use `{type: sigmoid}` (classes: 1, 0/1 targets)")
