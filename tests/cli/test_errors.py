"""Broken recipes: every one exits 2 from the CLI with `file:line:col: spec.path: message`.

Each case is a whole recipe file; `where` is the exact (line, column) the first problem points at
and `path` its spec path (empty for problems about the file itself: YAML syntax, empty file).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pydantic
import pytest
import torch

import blocks
from blocks.cli import main
from blocks.core.errors import Problem

HEAD = "  head: {type: softmax, classes: 10}\n"
IMG = "  input: {shape: [1, 28, 28]}\n"
FLAT = "  input: {shape: [16]}\n"


@dataclass(frozen=True)
class Case:
    id: str
    text: str
    where: tuple[int, int]
    path: str
    expect: str  # a substring of the first problem's message
    kind: str | None = None  # the first problem's stable `type`


def model(*lines: str, input_: str = IMG, head: str = HEAD) -> str:
    """A recipe whose model has these backbone lines (line 4 on) and `head` after them."""
    return "model:\n" + input_ + "  backbone:\n" + "".join(f"    {line}\n" for line in lines) + head


CASES = [
    # --- wrong types -------------------------------------------------------------------------
    Case("kernel_size_not_int", model("- {type: conv2d, out_channels: 32, kernel_size: 3x}", "- flatten"),
         (4, 53), "model.backbone[0].kernel_size", "valid integer"),
    Case("out_channels_negative", model("- {type: conv2d, out_channels: -4, kernel_size: 3}", "- flatten"),
         (4, 36), "model.backbone[0].out_channels", "greater than 0", "greater_than"),
    Case("input_shape_negative", "model:\n  input: {shape: [1, -28, 28]}\n  backbone: [flatten]\n" + HEAD,
         (2, 22), "model.input.shape[1]", "greater than 0"),
    Case("input_shape_empty", "model:\n  input: {shape: []}\n  backbone: [flatten]\n" + HEAD,
         (2, 18), "model.input.shape", "at least 1 item", "too_short"),
    Case("input_dtype_unknown", "model:\n  input: {shape: [4], dtype: float33}\n" + HEAD,
         (2, 30), "model.input.dtype", "'float32'", "literal_error"),
    Case("dropout_p_too_big", model("- {type: dropout, p: 1.5}", input_=FLAT),
         (4, 26), "model.backbone[0].p", "less than 1", "less_than"),
    Case("softmax_one_class", "model:\n" + FLAT + "  head: {type: softmax, classes: 1}\n",
         (3, 34), "model.head.classes", "needs at least 2 classes; for a binary (yes/no) problem use `{type: sigmoid}`"),
    Case("epochs_zero", "model:\n" + FLAT + "  head: {type: softmax, classes: 2}\ntrain: {epochs: 0}\n",
         (4, 17), "train.epochs", "greater than 0"),
    Case("block_not_mapping", model("- 42", input_=FLAT), (4, 7), "model.backbone[0]",
         "expected a block", "block_invalid"),
    # --- unknown keys and names -------------------------------------------------------------
    Case("unknown_block_type", model("- {type: conv2dd, out_channels: 3, kernel_size: 3}", "- flatten"),
         (4, 7), "model.backbone[0]", "did you mean 'conv2d' or 'conv1d'?", "block_type_unknown"),
    Case("unknown_bare_block", model("- rleu", input_=FLAT), (4, 7), "model.backbone[0]",
         "did you mean 'relu'?", "block_type_unknown"),
    Case("block_without_type", model("- {out_features: 3}", input_=FLAT), (4, 7), "model.backbone[0]",
         "no `type`", "block_type_missing"),
    Case("unknown_block_key", model("- {type: linear, out_feature: 3, out_features: 3}", input_=FLAT),
         (4, 22), "model.backbone[0].out_feature", "did you mean 'out_features'?", "extra_forbidden"),
    Case("unknown_head_key", "model:\n" + FLAT + "  head: {type: softmax, classes: 10, clases: 3}\n",
         (3, 38), "model.head.clases", "did you mean 'classes'?", "extra_forbidden"),
    Case("unknown_head_type", "model:\n" + FLAT + "  head: {type: softmx, classes: 10}\n",
         (3, 9), "model.head", "did you mean 'softmax'?", "union_tag_invalid"),
    Case("unknown_top_key", "model:\n" + FLAT + "  head: {type: softmax, classes: 2}\ntrian: {epochs: 3}\n",
         (4, 1), "trian", "did you mean 'train'?", "extra_forbidden"),
    Case("unknown_optimizer", "model:\n" + FLAT + "  head: {type: softmax, classes: 2}\n"
         "train: {optimizer: {type: adamm, lr: 0.1}}\n",
         (4, 20), "train.optimizer", "did you mean 'adam'?", "union_tag_invalid"),
    Case("unknown_dataset", "model:\n" + FLAT + "  head: {type: softmax, classes: 2}\ndata: {dataset: mnist}\n",
         (4, 17), "data.dataset", "'digits'", "literal_error"),
    Case("unknown_torch_layer", model("- {type: torch, layer: Conv2D}", input_=FLAT),
         (4, 28), "model.backbone[0].layer", "did you mean 'Conv2d'?"),
    Case("lazy_torch_layer", model("- {type: torch, layer: LazyLinear, kwargs: {out_features: 3}}", input_=FLAT),
         (4, 28), "model.backbone[0].layer", "lazy layers are not allowed"),
    Case("torch_kwargs_misfit", model("- {type: torch, layer: GroupNorm, kwargs: {groups: 2}}", input_=FLAT),
         (4, 7), "model.backbone[0]", "kwargs do not fit torch.nn.GroupNorm"),
    Case("missing_required_field", model("- {type: linear}", input_=FLAT),
         (4, 7), "model.backbone[0].out_features", "missing required key 'out_features'", "missing"),
    Case("missing_input", "model:\n  backbone: [flatten]\n" + HEAD,
         (2, 3), "model.input", "missing required key 'input'", "missing"),
    Case("nested_unknown_key", model("- type: repeat", "  times: 2", "  blocks:",
                                     "    - {type: linear, out_features: 8, bais: false}", input_=FLAT),
         (7, 43), "model.backbone[0].blocks[0].bais", "did you mean 'bias'?", "extra_forbidden"),
    Case("repeat_times_zero", model("- {type: repeat, times: 0, blocks: [relu]}", input_=FLAT),
         (4, 29), "model.backbone[0].times", "greater than 0"),
    # --- heads ------------------------------------------------------------------------------
    Case("head_and_heads", "model:\n" + FLAT + "  head: {type: softmax, classes: 2}\n"
         "  heads: {a: {type: softmax, classes: 2}}\n",
         (2, 3), "model", "exactly one of `head`"),
    Case("no_head", "model:\n" + FLAT + "  backbone: [relu]\n", (2, 3), "model", "exactly one of `head`"),
    Case("heads_empty", "model:\n" + FLAT + "  heads: {}\n", (3, 10), "model.heads", "`heads` is empty"),
    Case("head_name_not_identifier", "model:\n" + FLAT + "  heads:\n    my-head: {type: softmax, classes: 2}\n",
         (4, 5), "model.heads", "must be an identifier"),
    Case("class_weights_length", "model:\n" + FLAT
         + "  head: {type: softmax, classes: 3, class_weights: [1.0, 2.0]}\n",
         (3, 9), "model.head", "class_weights has 2 entries but the head has 3 classes"),
    Case("pos_weight_length", "model:\n" + FLAT
         + "  heads:\n    tags: {type: sigmoid, classes: 3, pos_weight: [1.0, 2.0]}\n",
         (4, 11), "model.heads.tags", "pos_weight has 2 entries"),
    Case("labels_length", "model:\n" + FLAT + "  head: {type: softmax, classes: 3, labels: [a, b]}\n",
         (3, 9), "model.head", "labels has 2 names"),
    # --- impossible shapes ------------------------------------------------------------------
    Case("kernel_larger_than_input", model("- {type: conv2d, out_channels: 8, kernel_size: 30}", "- flatten"),
         (4, 7), "model.backbone[0]", "kernel size 30 is larger than its padded input 28", "shape_error"),
    Case("flatten_of_scalar", model("- {type: torch, layer: Flatten, kwargs: {start_dim: 0}}", "- flatten",
                                    input_=FLAT),
         (5, 7), "model.backbone[1]", "nothing to flatten", "shape_error"),
    Case("head_on_non_flat_backbone", model("- {type: conv2d, out_channels: 8, kernel_size: 3}"),
         (5, 9), "model.head", "needs a flat feature vector", "shape_error"),
    Case("multi_head_on_non_flat", model("- {type: conv2d, out_channels: 8, kernel_size: 3}",
                                          head="  heads:\n    a: {type: softmax, classes: 2}\n"),
         (6, 8), "model.heads.a", "needs a flat feature vector", "shape_error"),
    Case("residual_shortcut_mismatch", model(
        "- type: residual",
        "  blocks: [{type: conv2d, out_channels: 16, kernel_size: 3, padding: 1}]",
        "  shortcut: [{type: conv2d, out_channels: 8, kernel_size: 1}]", "- flatten"),
         (4, 7), "model.backbone[0]", "shortcut output [8, 28, 28] does not match", "shape_error"),
    Case("residual_no_projection", model("- {type: residual, blocks: [flatten]}", input_=IMG),
         (4, 7), "model.backbone[0]", "no automatic projection fits", "shape_error"),
    Case("nested_shape_error", model(
        "- {type: conv2d, out_channels: 8, kernel_size: 3}",
        "- type: repeat", "  times: 3", "  blocks:",
        "    - {type: conv2d, out_channels: 8, kernel_size: 11}", "- flatten"),
         (8, 11), "model.backbone[1].blocks[0]", "in repetition 3 of 3", "shape_error"),
    Case("conv_on_flat_input", model("- {type: conv2d, out_channels: 8, kernel_size: 3}", input_=FLAT),
         (4, 7), "model.backbone[0]", "expects input of rank 3", "shape_error"),
    Case("groups_not_dividing", model("- {type: conv2d, out_channels: 8, kernel_size: 3, groups: 3}",
                                      "- flatten"),
         (4, 7), "model.backbone[0]", "not divisible by groups 3", "shape_error"),
    Case("same_padding_strided", model("- {type: conv2d, out_channels: 8, kernel_size: 3, stride: 2, "
                                       "padding: same}", "- flatten"),
         (4, 7), "model.backbone[0]", "padding 'same' needs stride 1", "shape_error"),
    Case("pool_padding_too_big", model("- {type: maxpool2d, kernel_size: 2, padding: 2}", "- flatten"),
         (4, 7), "model.backbone[0]", "at most half the kernel size", "shape_error"),
    Case("embedding_padding_idx", model("- {type: embedding, num_embeddings: 5, embedding_dim: 4, "
                                        "padding_idx: 9}", "- flatten", input_=FLAT),
         (4, 7), "model.backbone[0]", "padding_idx 9 is outside", "shape_error"),
    # --- the file itself --------------------------------------------------------------------
    Case("yaml_syntax", "model:\n  input: {shape: [1, 28\n", (3, 1), "", "invalid YAML", "yaml_syntax"),
    Case("yaml_bad_indent", "model:\n  input: {shape: [4]}\n   head: x\n", (3, 4), "",
         "invalid YAML", "yaml_syntax"),
    Case("empty_file", "", (1, 1), "", "the recipe is empty", "empty_recipe"),
    Case("comments_only", "# nothing here\n", (1, 1), "", "the recipe is empty", "empty_recipe"),
    Case("root_is_list", "- model\n- data\n", (1, 1), "", "expected a mapping", "not_a_mapping"),
    Case("root_is_scalar", "just words\n", (1, 1), "", "got a str", "not_a_mapping"),
    Case("duplicate_key", "model:\n" + FLAT + "  head: {type: softmax, classes: 2}\n"
         "  input: {shape: [8]}\n", (4, 3), "model.input", "duplicate key 'input' (the first is on line 2)",
         "duplicate_key"),
    # --- data section -----------------------------------------------------------------------
    Case("data_two_sources", "model:\n" + FLAT + "  head: {type: softmax, classes: 2}\n"
         "data: {dataset: digits, synthetic: {samples: 10}}\n",
         (4, 7), "data", "exactly one data source", "value_error"),
    Case("data_no_source", "model:\n" + FLAT + "  head: {type: softmax, classes: 2}\ndata: {val_fraction: 0.1}\n",
         (4, 7), "data", "exactly one data source"),
    Case("data_val_fraction", "model:\n" + FLAT + "  head: {type: softmax, classes: 2}\n"
         "data: {dataset: iris, val_fraction: 1.0}\n", (4, 37), "data.val_fraction", "less than 1"),
]


def _write(tmp_path: Path, case: Case) -> Path:
    path = tmp_path / f"{case.id}.yaml"
    path.write_text(case.text, encoding="utf-8")
    return path


def test_table_is_big_enough():
    assert len(CASES) >= 30
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_load_recipe_locates_the_problem(tmp_path, case):
    path = _write(tmp_path, case)
    with pytest.raises(blocks.SpecError) as info:
        blocks.load_recipe(path)
    err = info.value
    assert isinstance(err, ValueError)
    first = err.problems[0]
    assert isinstance(first, Problem)
    assert (first.file, first.line, first.column) == (str(path), *case.where)
    assert first.path == case.path
    assert case.expect in first.message
    if case.kind is not None:
        assert first.type == case.kind


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_cli_validate_exit_2_located_message(tmp_path, case, capsys):
    path = _write(tmp_path, case)
    assert main(["validate", str(path)]) == 2
    out, err = capsys.readouterr()
    prefix = f"{path}:{case.where[0]}:{case.where[1]}: " + (f"{case.path}: " if case.path else "")
    first = out.splitlines()[0]
    assert first.startswith(prefix), first
    assert case.expect in first
    assert "Traceback" not in out + err


SUBPROCESS_CASES = ["kernel_size_not_int", "unknown_block_type", "yaml_syntax", "residual_shortcut_mismatch",
                    "data_two_sources"]


def test_cli_validate_subprocess(tmp_path):
    cases = [case for case in CASES if case.id in SUBPROCESS_CASES]
    paths = [_write(tmp_path, case) for case in cases]
    result = subprocess.run([sys.executable, "-m", "blocks", "validate", *map(str, paths)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stdout.splitlines()
    for case, path in zip(cases, paths, strict=True):
        prefix = f"{path}:{case.where[0]}:{case.where[1]}: " + (f"{case.path}: " if case.path else "")
        assert any(line.startswith(prefix) and case.expect in line for line in lines), (prefix, lines)


def test_cli_validate_missing_file_exit_2(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    out, err = capsys.readouterr()
    assert "no recipe file" in out and "Traceback" not in out + err


def test_cli_validate_mixed_good_and_bad(tmp_path, capsys):
    bad = _write(tmp_path, CASES[0])
    assert main(["validate", "seed_cnn", str(bad)]) == 2
    out = capsys.readouterr().out
    assert out.startswith("ok: seed_cnn")


def test_all_problems_reported_at_once(tmp_path):
    text = model("- {type: conv2d, out_channels: 32, kernel_size: 3x}",
                 "- {type: conv2dd, out_channels: 3, kernel_size: 3}", "- flatten",
                 head="  head: {type: softmax, classes: 10, clases: 3}\n")
    path = tmp_path / "many.yaml"
    path.write_text(text)
    with pytest.raises(blocks.SpecError) as info:
        blocks.load_recipe(path)
    located = [(p.path, p.line, p.column) for p in info.value.problems]
    assert located == [("model.backbone[0].kernel_size", 4, 53), ("model.backbone[1]", 5, 7),
                       ("model.head.clases", 7, 38)]
    assert str(info.value).splitlines()[0].startswith(f"{path}:4:53: model.backbone[0].kernel_size: ")


def test_yaml_string_errors_say_string():
    with pytest.raises(blocks.SpecError) as info:
        blocks.load_recipe("model:\n  input: {shape: [4]}\n  head: {type: softmax, classes: 1}\n")
    assert str(info.value).startswith("<string>:3:34: model.head.classes: ")


# --- Python API errors ---------------------------------------------------------------------------
def test_model_spec_unknown_key_is_validation_error():
    with pytest.raises(pydantic.ValidationError) as info:
        blocks.ModelSpec(input={"shape": [4]}, head={"type": "softmax", "classes": 2}, backbon=[])
    assert info.value.errors()[0]["type"] == "extra_forbidden"


def test_block_unknown_key_is_validation_error():
    with pytest.raises(pydantic.ValidationError):
        blocks.ModelSpec(input={"shape": [4]}, backbone=[{"type": "linear", "out_features": 2, "bais": 1}],
                         head={"type": "softmax", "classes": 2})


def test_validate_assignment():
    spec = blocks.ModelSpec(input={"shape": [4]}, head={"type": "softmax", "classes": 2})
    with pytest.raises(pydantic.ValidationError):
        spec.input.shape = [0]


def test_build_bad_shapes_raises_spec_error_with_path():
    spec = blocks.ModelSpec(input={"shape": [1, 8, 8]},
                            backbone=[{"type": "relu"}, {"type": "conv2d", "out_channels": 4, "kernel_size": 9}],
                            head={"type": "softmax", "classes": 2})
    with pytest.raises(blocks.SpecError) as info:
        blocks.build(spec)
    first = info.value.problems[0]
    assert first.path == "model.backbone[1]"
    assert first.type == "shape_error"
    assert "conv2d with input shape [1, 8, 8]" in first.message
    assert first.file is None


def test_build_bad_dict_raises_spec_error_with_path():
    with pytest.raises(blocks.SpecError) as info:
        blocks.build({"input": {"shape": [4]}, "backbone": [{"type": "linear", "out_features": "x"}],
                      "head": {"type": "softmax", "classes": 2}})
    assert info.value.problems[0].path == "backbone[0].out_features"


def test_build_bad_dtype_argument():
    spec = blocks.ModelSpec(input={"shape": [4]}, head={"type": "softmax", "classes": 2})
    with pytest.raises(blocks.SpecError, match="floating-point"):
        blocks.build(spec, dtype=torch.int64)


def test_spec_error_from_string_and_problem():
    assert blocks.SpecError("plain").problems[0].message == "plain"
    problem = Problem("model.x", "bad", file="f.yaml", line=3, column=4)
    assert str(blocks.SpecError(problem)) == "f.yaml:3:4: model.x: bad"
    assert str(Problem("a", "b", line=2)) == "<string>:2:1: a: b"
