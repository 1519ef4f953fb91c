"""Hostile recipes: each is exit 2 with `file:line:col: spec.path: message`, fast and small.

The cases of issue 15 (alias bombs, deep nesting, tags, bad bytes, strict numbers, resource
bombs) as fixtures with their exact locations and messages, through `blocks validate` and
`blocks summary` in-process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
import torch

import blocks
from blocks.cli import main
from blocks.core.errors import escape

BASE = ("model:\n  input: {shape: [4]}\n  backbone: [{type: linear, out_features: 8}]\n"
        "  head: {type: softmax, classes: 2}\n")


def laughs(levels: int = 9) -> str:
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]")
    return "\n".join(lines) + "\n" + BASE


def merge_laughs(levels: int = 30) -> str:
    lines = ["m0: &m0 {a: 1, b: 2}"]
    for i in range(1, levels):
        lines.append(f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}], k{i}: 1}}")
    return "\n".join(lines) + "\n" + BASE


@dataclass(frozen=True)
class Case:
    id: str
    data: bytes
    where: str  # "line:col"
    expect: str  # substring of the message after the location


def case(id: str, text: str | bytes, where: str, expect: str) -> Case:
    data = text if isinstance(text, bytes) else text.encode("utf-8", errors="surrogatepass")
    return Case(id, data, where, expect)


CASES = [
    # --- 1. bounded parsing ---------------------------------------------------------------------
    case("billion_laughs", laughs(), "1:34", "holds more than 200,000 values, counting each use of a YAML alias"),
    case("merge_key_bomb", merge_laughs(), "1:", "holds more than 200,000 values, counting each use of a YAML alias"),
    case("recursive_alias_list", "a: &a [1, *a]\n" + BASE, "1:4",
         "a[1]: this alias refers to a mapping or list that contains it"),
    case("recursive_alias_map", "a: &a {b: *a}\n" + BASE, "1:4",
         "a.b: this alias refers to a mapping or list that contains it"),
    case("nesting_10000_lists", "x: " + "[" * 10000 + "]" * 10000 + "\n" + BASE, "1:103",
         "nests more than 100 levels of mappings and lists"),
    case("nesting_10000_mappings", "x: " + "{a: " * 10000 + "1" + "}" * 10000 + "\n" + BASE, "1:",
         "nests more than 100 levels"),
    case("integer_5000_digits", "model:\n  input: {shape: [" + "9" * 5000 + "]}\n"
         "  head: {type: softmax, classes: 2}\n", "2:19",
         "model.input.shape[0]: integer 999999999999...(5000 digits) is out of range"),
    case("out_features_2_63", BASE.replace("8}", "9223372036854775807}"), "3:43",
         "model.backbone[0].out_features: Input should be less than or equal to 2147483647"),
    case("out_features_2_64", BASE.replace("8}", "18446744073709551616}"), "3:43",
         "integer 18446744073709551616 is out of range: recipe integers fit in 64 bits"),
    # --- 2. every YAML problem is exit 2, located ------------------------------------------------
    case("merge_key_on_scalar", "x: {<<: 5}\n" + BASE, "1:9",
         "x: a merge key `<<` takes a mapping or a list of mappings (e.g. `<<: *base`), got '5'"),
    case("python_apply_tag", "x: !!python/object/apply:os.system [echo hi]\n" + BASE, "1:4",
         "x: YAML tag '!!python/object/apply:os.system' is not allowed"),
    case("python_name_tag", "x: !!python/name:os.system\n" + BASE, "1:4",
         "YAML tag '!!python/name:os.system' is not allowed"),
    case("python_object_on_mapping", "x: !!python/object:os.Foo {a: 1}\n" + BASE, "1:4",
         "YAML tag '!!python/object:os.Foo' is not allowed"),
    case("set_tag", "x: !!set {a, b}\n" + BASE, "1:4", "YAML tag '!!set' is not allowed"),
    case("local_tag", "model: !thing\n  input: {shape: [4]}\n", "1:8", "YAML tag '!thing' is not allowed"),
    case("lone_surrogate_escape", 'model:\n  name: "\\ud800"\n' + BASE[7:], "2:9",
         "model.name: text holds U+D800, a lone surrogate"),
    case("lone_surrogate_bytes", b"model:\n  name: \xed\xa0\x80\n" + BASE[7:].encode(), "2:9",
         "not UTF-8 text: byte 0xed at byte offset 15"),
    case("control_character", "model:\n  name: a\x01b\n" + BASE[7:], "2:10",
         "invalid character U+0001 (a control character)"),
    case("nul_byte", "model:\n  name: a\x00b\n" + BASE[7:], "2:10", "invalid character U+0000"),
    case("u_fffe", "model:\n  name: a\ufffeb\n" + BASE[7:], "2:10",
         "invalid character U+FFFE (a Unicode noncharacter)"),
    case("invalid_utf8", BASE.encode()[:30] + b"\xff\xfe" + BASE.encode()[30:], "3:2",
         "not UTF-8 text: byte 0xff at byte offset 30 (invalid start byte)"),
    case("binary_garbage", bytes(range(256)) * 4, "2:118",
         "not UTF-8 text: byte 0x80 at byte offset 128 (invalid start byte)"),
    case("binary_control_bytes", bytes(range(128)) * 4, "1:1", "invalid character U+0000"),
    case("binary_garbage_high", b"\x89PNG\r\n\x1a\n" + bytes(range(128, 256)), "1:1",
         "not UTF-8 text: byte 0x89 at byte offset 0"),
    case("duplicate_key", BASE + "model: {}\n", "5:1", "duplicate key 'model' (the first is on line 1)"),
    case("non_scalar_key", "? [a, b]\n: 1\n" + BASE, "1:3", "mapping keys must be plain names"),
    # --- 11. strict numbers --------------------------------------------------------------------------
    case("size_yes", BASE.replace("8}", "yes}"), "3:43",
         "model.backbone[0].out_features: Input should be a valid integer, got str 'yes'"),
    case("size_true", BASE.replace("8}", "true}"), "3:43",
         "Input should be a valid integer, got the boolean True"),
    case("size_yaml11_octal", BASE.replace("8}", "010}"), "3:43",
         "`010` is not a plain decimal integer (YAML 1.1 reads leading zeros as octal"),
    case("size_hex", BASE.replace("8}", "0x10}"), "3:43", "`0x10` is not a plain decimal integer"),
    case("size_base_60", BASE.replace("8}", "1:30}"), "3:43", "`1:30` is not a plain decimal integer"),
    case("size_float", BASE.replace("8}", "8.0}"), "3:43", "Input should be a valid integer, got float 8.0"),
    case("size_quoted", BASE.replace("8}", "'8'}"), "3:43", "Input should be a valid integer, got str '8'"),
    case("classes_2_31", BASE.replace("classes: 2", "classes: 2147483648"), "4:34",
         "model.head.classes: Input should be less than or equal to 2147483647"),
    case("lr_overflows_to_inf", BASE + "train: {optimizer: {type: adam, lr: 1.0e400}}\n", "5:37",
         "train.optimizer.lr: Input should be a finite number"),
    case("lr_nan", BASE + "train: {optimizer: {type: adam, lr: .nan}}\n", "5:37",
         "train.optimizer.lr: Input should be a finite number"),
    case("lr_2_63", BASE + "train: {optimizer: {type: adam, lr: 9223372036854775808}}\n", "5:37",
         "integer 9223372036854775808 is out of range"),
    case("seed_negative", BASE + "train: {seed: -1}\n", "5:15",
         "train.seed: Input should be greater than or equal to 0"),
    case("lr_bool", BASE + "train: {optimizer: {type: adam, lr: true}}\n", "5:37",
         "train.optimizer.lr: Input should be a valid number, got the boolean True"),
    case("dropout_bool", BASE.replace("[{type: linear, out_features: 8}]", "[{type: dropout, p: false}]"),
         "3:33", "model.backbone[0].p: Input should be a valid number, got the boolean False"),
    case("epochs_bool", BASE + "train: {epochs: true}\n", "5:17", "Input should be a valid integer, got the boolean"),
    # --- 3. resource bombs -------------------------------------------------------------------------
    case("repeat_a_billion", BASE.replace("[{type: linear, out_features: 8}]",
                                          "[{type: repeat, times: 1000000000, blocks: [relu]}]"),
         "3:36", "model.backbone[0].times: Input should be less than or equal to 10000"),
    case("nested_repeats", BASE.replace("[{type: linear, out_features: 8}]",
                                        "[{type: repeat, times: 10000, blocks: [{type: repeat, "
                                        "times: 10000, blocks: [relu]}]}]"), "3:52",
         "model.backbone[0].blocks[0]: the model would have more than 10,000 blocks once `repeat` "
         "is expanded (here: a repeat of 1 block(s), 10,000 times)"),
    case("nested_residuals_70", "model:\n  input: {shape: [4]}\n  backbone:\n    - "
         + "{type: residual, blocks: [" * 70 + "relu" + "]}" * 70 + "\n  head: {type: softmax, classes: 2}\n",
         "4:", "nests more than 100 levels"),  # YAML's depth limit comes first; 65 in Python: test_nesting
    case("linear_1e9_by_1e5", BASE.replace("[{type: linear, out_features: 8}]",
                                           "[{type: linear, out_features: 100000}, "
                                           "{type: linear, out_features: 1000000000}]"), "3:52",
         "model.backbone[1]: the model would need 100,003,000,500,002 parameters (400.0 TB with "
         "buffers, 4 bytes each), more than the "),
    case("conv_1e5_channels", "model:\n  input: {shape: [3, 32, 32]}\n  backbone: [{type: conv2d, "
         "out_channels: 100000, kernel_size: 3}, {type: conv2d, out_channels: 100000, kernel_size: 3}, "
         "global_avgpool]\n  head: {type: softmax, classes: 2}\n", "3:",
         "model.backbone[1]: the model would need 90,003,100,002 parameters"),
    case("embedding_1e10", "model:\n  input: {shape: [4], dtype: int64}\n  backbone: [{type: embedding, "
         "num_embeddings: 2000000000, embedding_dim: 1000}, flatten]\n  head: {type: softmax, classes: 2}\n",
         "3:", "model.backbone[0]: the model would need 2,000,000,008,002 parameters"),
    case("flatten_2_62_values", "model:\n  input: {shape: [2147483647, 2147483647]}\n  backbone: [flatten]\n"
         "  head: {type: softmax, classes: 2}\n", "3:14",
         "model.backbone[0]: flatten with input shape [2147483647, 2147483647]: output shape "
         "[4611686014132420609] is too large"),
    case("torch_layer_2_36_outputs", BASE.replace("[{type: linear, out_features: 8}]",
                                                  "[{type: torch, layer: Linear, kwargs: {in_features: 4, "
                                                  "out_features: 68719476736}}]"),
         "3:14", "output shape [68719476736] is too large"),
]


def run(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_hostile_recipe_is_exit_2_located_fast(c: Case, tmp_path, capsys):
    path = tmp_path / f"{c.id}.yaml"
    path.write_bytes(c.data)
    for verb in ("validate", "summary"):
        began = time.perf_counter()
        code, output = run([verb, str(path)], capsys)
        elapsed = time.perf_counter() - began
        assert code == 2, output
        assert "Traceback" not in output and "internal error" not in output
        assert f"{path}:{c.where}" in output, output
        assert c.expect in output, output
        assert elapsed < 10, f"{verb} took {elapsed:.1f} s"


def test_recipe_files_over_the_size_limit_are_refused_before_reading(tmp_path, capsys, monkeypatch):
    path = tmp_path / "big.yaml"
    path.write_text(BASE + "#" * 200 + "\n")
    monkeypatch.setenv("BLOCKS_MAX_RECIPE_BYTES", "100")
    code, output = run(["validate", str(path)], capsys)
    assert code == 2
    assert (f"{path}:1:1: the recipe file is larger than 100 bytes; recipes are small text files "
            "(set BLOCKS_MAX_RECIPE_BYTES to raise the limit)") in output
    monkeypatch.delenv("BLOCKS_MAX_RECIPE_BYTES")
    assert run(["validate", str(path)], capsys)[0] == 0
    with pytest.raises(blocks.SpecError, match="larger than 100 bytes"):
        monkeypatch.setenv("BLOCKS_MAX_RECIPE_BYTES", "100")
        blocks.load_recipe(BASE + "#" * 200 + "\n")


def test_default_size_limit_is_10_mb_and_device_files_are_not_read(tmp_path, capsys):
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as handle:
        handle.write(BASE.encode())
        handle.seek(10_000_001)
        handle.write(b"\n")
    code, output = run(["validate", str(path)], capsys)
    assert code == 2 and "larger than 10,000,000 bytes" in output
    code, output = run(["validate", "/dev/zero"], capsys)
    assert code == 2 and "/dev/zero: is not a regular file" in output


def test_bad_limit_settings_are_located_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BLOCKS_MAX_BLOCKS", "many")
    code, output = run(["validate", "seed_cnn"], capsys)
    assert code == 2 and "BLOCKS_MAX_BLOCKS='many' must be a positive whole number" in output


def test_yaml_1_2_booleans_and_dates_stay_text():
    recipe = blocks.load_recipe(BASE.replace("model:\n", "model:\n  name: no\n  description: 2024-01-01\n"))
    assert (recipe.model.name, recipe.model.description) == ("no", "2024-01-01")
    assert blocks.load_recipe(BASE + "train: {shuffle: false, epochs: 1_000}\n").train.epochs == 1000


def test_merge_keys_still_work_and_the_first_merged_mapping_wins():
    text = ("model:\n  input: {shape: [4]}\n  backbone:\n    - &b {type: linear, out_features: 8}\n"
            "    - &c {type: linear, out_features: 9, bias: false}\n    - {<<: [*b, *c]}\n"
            "    - {<<: *b, out_features: 3}\n  head: {type: softmax, classes: 2}\n")
    merged = blocks.load_recipe(text).model.backbone
    assert (merged[2].out_features, merged[2].bias) == (8, False)
    assert (merged[3].out_features, merged[3].bias) == (3, True)


# --- 3. resource bombs: counted before anything is allocated --------------------------------------
def test_build_refuses_a_model_over_the_memory_limit_with_its_exact_size(monkeypatch):
    spec = blocks.load_recipe(BASE).model  # 4*8+8 + 8*2+2 = 58 parameters, 232 bytes in float32
    monkeypatch.setenv("BLOCKS_MAX_MODEL_BYTES", "200")
    with pytest.raises(blocks.SpecError) as info:
        blocks.build(spec)
    assert str(info.value) == (
        "model.backbone[0]: the model would need 58 parameters (232 bytes with buffers, 4 bytes "
        "each), more than the 200 bytes allowed (this machine's memory, or BLOCKS_MAX_MODEL_BYTES); "
        "this block alone has 40; refusing to build it")
    with pytest.raises(blocks.SpecError, match="464 bytes with buffers, 8 bytes each"):
        blocks.build(spec, dtype=torch.float64)
    monkeypatch.setenv("BLOCKS_MAX_MODEL_BYTES", "232")
    assert sum(p.numel() for p in blocks.build(spec).parameters()) == 58


def test_a_huge_model_is_refused_by_build_without_allocating():
    spec = blocks.load_recipe(CASES[[c.id for c in CASES].index("linear_1e9_by_1e5")].data.decode()).model
    began = time.perf_counter()
    with pytest.raises(blocks.SpecError, match=r"100,003,000,500,002 parameters \(400.0 TB.*this block "
                       r"alone has 100,001,000,000,000; refusing to build it"):
        blocks.build(spec)
    assert time.perf_counter() - began < 5


def test_validate_reports_the_parameter_count(capsys):
    code, output = run(["validate", "resnet18"], capsys)
    assert code == 0 and "11,689,512 parameters" in output


def test_huge_model_in_train_is_exit_2(tmp_path, capsys):
    path = tmp_path / "huge.yaml"
    path.write_text(BASE.replace("out_features: 8", "out_features: 2000000000").replace(
        "classes: 2", "classes: 1000") + "data: {synthetic: {samples: 8}}\ntrain: {epochs: 1}\n")
    code, output = run(["train", str(path), "--out", str(tmp_path / "run"), "--quiet", "--no-plots"], capsys)
    assert code == 2, output
    assert "the model would need 2,010,000,001,000 parameters" in output


# --- 11. names are escaped when printed -------------------------------------------------------
def test_bidi_and_control_characters_are_escaped_when_printed(tmp_path, capsys):
    path = tmp_path / "r.yaml"
    path.write_text(BASE.replace("model:\n", 'model:\n  name: "evil\\u202eexe.yaml\\x1b[2J"\n'))
    code, output = run(["validate", str(path)], capsys)
    assert code == 0 and "evil\\u202eexe.yaml\\x1b[2J" in output and "\u202e" not in output
    code, output = run(["summary", str(path)], capsys)
    assert code == 0 and "Model: evil\\u202eexe.yaml\\x1b[2J" in output and "\x1b" not in output
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE.replace("type: linear", 'type: "line\\u202ear"'))
    code, output = run(["validate", str(bad)], capsys)
    assert code == 2 and "line\\u202ear" in output and "\u202e" not in output
    assert escape("a\tb\nc\u200fd") == "a\tb\nc\\u200fd"


def test_a_large_file_of_many_blocks_is_refused_quickly(tmp_path, capsys):
    """7 MB of `- relu`: refused when the value count passes the cap, not after reading it all."""
    path = tmp_path / "relus.yaml"
    path.write_text("model:\n  input: {shape: [4]}\n  backbone:\n" + "    - relu\n" * 700_000
                    + "  head: {type: softmax, classes: 2}\n")
    began = time.perf_counter()
    code, output = run(["validate", str(path)], capsys)
    assert code == 2 and f"{path}:199994:7: the recipe holds more than 200,000 values" in output
    assert time.perf_counter() - began < 5


def test_summary_batch_size_beyond_the_size_range_is_exit_2(capsys):
    code, output = run(["summary", "seed_cnn", "--batch-size", str(10**19)], capsys)
    assert code == 2 and "--batch-size must be between 1 and 2,147,483,647" in output
