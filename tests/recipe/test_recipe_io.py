"""Recipes in and out: every source form, YAML round trips, and the JSON Schema."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import blocks

SMALL = """\
model:
  input: {shape: [4]}
  backbone: [{type: linear, out_features: 3}, relu]
  head: {type: softmax, classes: 2}
"""


@pytest.mark.parametrize("name", sorted(blocks.bundled_recipes()))
def test_bundled_recipe_round_trips(name):
    recipe = blocks.load_recipe(name)
    assert blocks.load_recipe(blocks.dump_recipe(recipe)) == recipe
    assert blocks.load_recipe(blocks.dump_recipe(recipe, full=True)) == recipe
    assert blocks.load_recipe(recipe.model_dump(mode="json")) == recipe
    assert blocks.load_recipe(recipe.model_dump_json()) == recipe  # JSON is YAML too


def test_dump_is_lean_and_keeps_union_tags():
    recipe = blocks.load_recipe("tabular_mlp")
    data = yaml.safe_load(blocks.dump_recipe(recipe))
    assert data["train"]["optimizer"]["type"] == "adamw"
    assert data["train"]["scheduler"] == {"type": "cosine"}
    assert "relu" in data["model"]["backbone"]  # all-default blocks dump as their bare name
    assert "val_fraction" not in data["data"]  # defaults left out
    full = yaml.safe_load(blocks.dump_recipe(recipe, full=True))
    assert full["data"]["val_fraction"] == 0.2


def test_load_sources_agree(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    from_path = blocks.load_recipe(path)
    assert from_path.source_path == path.resolve()
    assert blocks.load_recipe(str(path)) == from_path
    assert blocks.load_recipe(SMALL) == from_path
    assert blocks.load_recipe(yaml.safe_load(SMALL)) == from_path
    assert blocks.load_recipe(SMALL).source_path is None


def test_load_bundled_by_name():
    by_name = blocks.load_recipe("seed_cnn")
    assert blocks.load_recipe("seed_cnn.yaml") == by_name
    assert blocks.load_recipe(blocks.bundled_recipes()["seed_cnn"]) == by_name
    assert by_name.source_path.name == "seed_cnn.yaml"
    assert set(blocks.bundled_recipes()) >= {"seed_cnn", "resnet18", "multitask", "residual_cnn",
                                             "tabular_mlp"}


def test_unknown_bundled_name_suggests():
    with pytest.raises(blocks.SpecError, match="did you mean the bundled recipe 'seed_cnn'"):
        blocks.load_recipe("seed_cn")


def test_yaml_merge_keys():
    text = """\
conv: &conv {type: conv2d, out_channels: 4, kernel_size: 3}
"""
    with pytest.raises(blocks.SpecError, match="unknown key 'conv'"):
        blocks.load_recipe(text + SMALL)
    merged = """\
model:
  input: {shape: [1, 8, 8]}
  backbone:
    - &conv {type: conv2d, out_channels: 4, kernel_size: 3}
    - {<<: *conv, out_channels: 8}
    - flatten
  head: {type: softmax, classes: 2}
"""
    spec = blocks.load_recipe(merged).model
    assert [b.out_channels for b in spec.backbone[:2]] == [4, 8]


# --- hypothesis: small random specs round-trip ---------------------------------------------------
flat_blocks = st.one_of(
    st.builds(lambda n, b: {"type": "linear", "out_features": n, "bias": b},
              st.integers(1, 64), st.booleans()),
    st.sampled_from(["relu", "gelu", "silu", "tanh", "identity", "batchnorm1d", "layernorm"]),
    st.builds(lambda p: {"type": "dropout", "p": p}, st.floats(0, 0.99, allow_nan=False)),
    st.builds(lambda s: {"type": "leaky_relu", "negative_slope": s},
              st.floats(-1, 1, allow_nan=False, allow_subnormal=False)),
    st.builds(lambda a: {"type": "gelu", "approximate": a}, st.sampled_from(["none", "tanh"])),
)
repeat_blocks = st.builds(lambda t, inner: {"type": "repeat", "times": t, "blocks": inner},
                          st.integers(1, 3), st.lists(flat_blocks, min_size=1, max_size=3))
residual_blocks = st.builds(lambda inner: {"type": "residual", "blocks": inner},
                            st.lists(flat_blocks, min_size=1, max_size=3))
softmax_heads = st.builds(
    lambda c, s, hidden, cw: {"type": "softmax", "classes": c, "label_smoothing": s, "hidden": hidden,
                              **({"class_weights": [1.0] * c} if cw else {})},
    st.integers(2, 12), st.sampled_from([0.0, 0.1]), st.lists(st.integers(1, 16), max_size=2),
    st.booleans())
sigmoid_heads = st.builds(
    lambda c, t, pw: {"type": "sigmoid", "classes": c, "threshold": t, **({"pos_weight": pw} if pw else {})},
    st.integers(1, 5), st.sampled_from([0.25, 0.5, 0.75]), st.sampled_from([None, 2.0]))
heads = st.one_of(softmax_heads, sigmoid_heads)


@st.composite
def recipes(draw):
    model = {"input": {"shape": [draw(st.integers(1, 32))]},
             "backbone": draw(st.lists(st.one_of(flat_blocks, repeat_blocks, residual_blocks), max_size=5))}
    if draw(st.booleans()):
        model["name"] = draw(st.text("abc-_ xyz", min_size=1, max_size=8))
    if draw(st.booleans()):
        model["head"] = draw(heads)
    else:
        names = draw(st.lists(st.sampled_from(["a", "b", "kind", "tags"]), min_size=1, max_size=3, unique=True))
        model["heads"] = {name: draw(heads) for name in names}
    recipe = {"model": model}
    if draw(st.booleans()):
        recipe["train"] = {"epochs": draw(st.integers(1, 5)),
                           "optimizer": draw(st.sampled_from([{"type": "sgd", "momentum": 0.9},
                                                              {"type": "adam"}, {"type": "adamw"}])),
                           "scheduler": draw(st.sampled_from([None, {"type": "cosine"}, {"type": "step"}]))}
    if draw(st.booleans()):
        recipe["data"] = draw(st.sampled_from([{"dataset": "iris"}, {"synthetic": {"samples": 64}},
                                               {"csv": {"path": "x.csv", "target": "y"}}]))
    return recipe


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recipes())
def test_random_recipes_round_trip(data):
    recipe = blocks.load_recipe(data)
    text = blocks.dump_recipe(recipe)
    assert blocks.load_recipe(text) == recipe
    model_only = blocks.ModelSpec.model_validate(yaml.safe_load(blocks.dump_recipe(recipe.model)))
    assert model_only == recipe.model


# --- JSON Schema ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def schema():
    schema = blocks.recipe_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


@pytest.fixture(scope="module")
def validator(schema):
    """One checked validator: `jsonschema.validate` re-checks the schema itself on every call."""
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("name", sorted(blocks.bundled_recipes()))
def test_bundled_recipes_validate_against_schema(validator, name):
    data = yaml.safe_load(blocks.bundled_recipes()[name].read_text())
    validator.validate(data)


@pytest.mark.parametrize("broken", [
    {"model": {"input": {"shape": [4]}, "head": {"type": "softmax", "classes": 2}, "extra": 1}},
    {"model": {"input": {"shape": [4]}, "backbone": [{"type": "nope"}],
               "head": {"type": "softmax", "classes": 2}}},
    {"model": {"input": {"shape": [4]}, "backbone": [{"type": "linear"}],
               "head": {"type": "softmax", "classes": 2}}},
    {"model": {"input": {"shape": [4]}, "backbone": ["linear"], "head": {"type": "softmax", "classes": 2}}},
    {"model": {"input": {"shape": ["x"]}, "head": {"type": "softmax", "classes": 2}}},
    {"model": {"input": {"shape": [4]}, "head": {"type": "softmax", "classes": 1}}},
    {"model": {"input": {"shape": [4]}, "head": {"type": "softmax", "classes": 2}}, "train": {"epochs": 0}},
])
def test_broken_recipe_fails_schema(validator, broken):
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(broken)


def test_schema_lists_every_block_type(schema):
    assert {f"block.{name}" for name in blocks.block_types()} <= set(schema["$defs"])
    assert schema["$schema"].endswith("2020-12/schema")
    json.dumps(schema)
