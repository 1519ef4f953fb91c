"""`model.inputs:` and `model.combine:`: static shapes across inputs, exact counts, located errors."""

from __future__ import annotations

import pytest

import blocks
from blocks.core.errors import SpecError
from blocks.spec.budget import footprint

HEAD = {"type": "softmax", "classes": 2}
INPUTS = {
    "review": {"kind": "text", "column": "review", "max_length": 16, "vocab_size": 100},
    "category": {"kind": "categorical", "column": "category"},
    "price": {"kind": "numeric", "columns": ["price", "weight"]},
}


def spec(**fields) -> blocks.ModelSpec:
    return blocks.ModelSpec(**{"inputs": INPUTS, "head": HEAD, **fields})


def test_default_encoders_concat_shapes_and_exact_counts():
    s = spec(backbone=[{"type": "linear", "out_features": 8}])
    shapes = s.infer_shapes()
    assert shapes.inputs.encoded == {"review": (32,), "category": (8,), "price": (2,)}
    assert shapes.input_shape == (42,)
    expected = 100 * 32 + 64 * 8 + (42 * 8 + 8) + (8 * 2 + 2)
    assert footprint(s).params == expected
    model = blocks.build(s, seed=0)
    assert sum(p.numel() for p in model.parameters()) == expected


@pytest.mark.parametrize(("combine", "extra"), [
    ({"type": "gated", "dim": 12}, 2 * ((32 * 12 + 12) + (8 * 12 + 12) + (2 * 12 + 12))),
    ({"type": "attention", "dim": 12, "heads": 3},
     (32 * 12 + 12) + (8 * 12 + 12) + (2 * 12 + 12) + 12 + 4 * 12 * 12 + 4 * 12),
])
def test_gated_and_attention_combiners_count_exactly(combine, extra):
    s = spec(combine=combine)
    assert s.infer_shapes().input_shape == (12,)
    expected = 100 * 32 + 64 * 8 + extra + (12 * 2 + 2)
    assert footprint(s).params == expected
    model = blocks.build(s, seed=0)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_standardised_numeric_input_holds_its_statistics_as_buffers():
    inputs = {**INPUTS, "price": {**INPUTS["price"], "mean": [1.0, 2.0], "std": [2.0, 4.0]}}
    s = blocks.ModelSpec(inputs=inputs, head=HEAD)
    assert footprint(s).buffers == 4
    model = blocks.build(s, seed=0)
    assert sum(b.numel() for b in model.buffers()) == 4


def test_encoder_shape_error_is_located_at_the_input_and_block():
    bad = {**INPUTS, "review": {**INPUTS["review"], "encoder": [
        {"type": "embedding", "num_embeddings": 100, "embedding_dim": 8},
        {"type": "conv2d", "out_channels": 4, "kernel_size": 3}]}}
    with pytest.raises(SpecError) as err:
        blocks.ModelSpec(inputs=bad, head=HEAD).infer_shapes()
    assert str(err.value).startswith("model.inputs.review.encoder[1]:")


def test_encoder_that_ends_in_a_sequence_names_the_fix():
    bad = {**INPUTS, "review": {**INPUTS["review"], "encoder": [
        {"type": "embedding", "num_embeddings": 100, "embedding_dim": 8}]}}
    with pytest.raises(SpecError, match=r"^model\.inputs\.review\.encoder: gives \[16, 8\].*token_mean"):
        blocks.ModelSpec(inputs=bad, head=HEAD).infer_shapes()


def test_embedding_smaller_than_the_vocabulary_is_refused_before_training():
    bad = {**INPUTS, "review": {**INPUTS["review"], "encoder": [
        {"type": "bag_of_words", "num_embeddings": 50}]}}
    with pytest.raises(SpecError, match=r"model\.inputs\.review\.encoder\[0\]\.num_embeddings: 50 rows"):
        blocks.ModelSpec(inputs=bad, head=HEAD).infer_shapes()


def test_attention_heads_must_divide_dim():
    with pytest.raises(SpecError, match=r"^model\.combine: dim 10 is not divisible by heads 4"):
        spec(combine={"type": "attention", "dim": 10, "heads": 4}).infer_shapes()


def test_exactly_one_of_input_and_inputs():
    with pytest.raises(ValueError, match="exactly one of `input`"):
        blocks.ModelSpec(input={"shape": [3]}, inputs=INPUTS, head=HEAD)
    with pytest.raises(ValueError, match="`combine` goes with `inputs`"):
        blocks.ModelSpec(input={"shape": [3]}, combine="concat", head=HEAD)


def test_recipe_errors_name_the_yaml_line(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model:\n  inputs:\n    review: {kind: text, max_length: -3}\n"
                    "  head: {type: softmax, classes: 2}\n")
    with pytest.raises(SpecError) as err:
        blocks.load_recipe(path)
    assert "model.inputs.review.text.max_length" in str(err.value)
    assert ":3:" in str(err.value)


def test_spec_round_trips_through_a_dict():
    s = spec(combine={"type": "gated", "dim": 12})
    again = blocks.ModelSpec.model_validate(s.model_dump(exclude_none=True))
    assert again == s


def test_a_transformer_text_encoder_counts_exactly_and_runs():
    import torch

    encoder = [{"type": "embedding", "num_embeddings": 100, "embedding_dim": 16, "padding_idx": 0},
               "position_embedding", {"type": "transformer_encoder", "heads": 2, "mlp_dim": 32},
               "token_mean"]
    s = blocks.ModelSpec(inputs={"review": {**INPUTS["review"], "encoder": encoder}}, head=HEAD)
    model = blocks.build(s, seed=0)
    assert footprint(s).params == sum(p.numel() for p in model.parameters())
    out = model({"review": torch.randint(0, 100, (3, 16))})
    assert out.shape == (3, 2)


def test_an_unknown_kind_is_named_as_a_kind(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model:\n  inputs:\n    plan: {kind: categorcal}\n"
                    "  head: {type: softmax, classes: 2}\n")
    with pytest.raises(SpecError) as err:
        blocks.load_recipe(path)
    assert f"{path}:3:11: model.inputs.plan: unknown kind 'categorcal'; did you mean " \
           "'categorical'?" in str(err.value)


def test_a_huge_max_length_is_refused_before_anything_is_allocated():
    with pytest.raises(ValueError, match="max_length"):
        blocks.ModelSpec(inputs={"review": {"kind": "text", "max_length": 10**9}}, head=HEAD)


@pytest.mark.parametrize(("option", "line", "expected"), [
    ("stream: {chunk_rows: 100}", "data.stream", "a multi-input table is read whole"),
    ("standardize: false", "data.standardize", "set `model.inputs.<name>.standardize`"),
    ("impute: mean", "data.impute", "a missing number an error naming its cell"),
    ("classes: [0, 1]", "data.classes", "filter the table's rows instead"),
])
def test_data_options_a_multi_input_table_would_drop_are_errors_where_written(
        tmp_path, option, line, expected):
    """These options used to be ignored without a word for `model.inputs` (a streamed recipe
    read its table whole): each is now refused at its line, from YAML and from Python."""
    path = tmp_path / "r.yaml"
    path.write_text("model:\n  inputs:\n    plan: {kind: numeric, columns: [plan]}\n"
                    "  head: {type: softmax, classes: 2}\n"
                    f"data:\n  csv: {{path: t.csv, target: y}}\n  {option}\n")
    with pytest.raises(SpecError) as err:
        blocks.load_recipe(path)
    assert f"{path}:7:" in str(err.value) and line in str(err.value)
    assert expected in str(err.value)
    import yaml

    from blocks.data.splits import load_splits

    recipe = blocks.Recipe.model_validate(yaml.safe_load(path.read_text()))  # no file check
    with pytest.raises(SpecError, match=line):
        load_splits(recipe, tmp_path)
