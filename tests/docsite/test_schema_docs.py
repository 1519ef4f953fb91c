"""The recipe JSON Schema describes every field and dispatches tagged unions on `type`."""

from __future__ import annotations

import copy

import jsonschema
import pytest

import blocks

RECIPE = {
    "model": {"input": {"shape": [4]}, "backbone": ["relu", {"type": "linear", "out_features": 3}],
              "head": {"type": "softmax", "classes": 3}},
    "train": {"scheduler": "cosine", "optimizer": {"type": "sgd", "lr": 0.1}},
}


def schema_errors(change) -> list[tuple[list, str]]:
    data = copy.deepcopy(RECIPE)
    change(data)
    validator = jsonschema.Draft202012Validator(blocks.recipe_schema())
    return [(list(e.absolute_path), e.message) for e in validator.iter_errors(data)]


def test_every_field_has_a_description():
    schema = blocks.recipe_schema()
    missing = [f"{name}.{key}" for name, node in [("Recipe", schema), *schema["$defs"].items()]
               for key, prop in node.get("properties", {}).items()
               if key != "type" and not prop.get("description")]
    assert not missing, f"fields without a description: {missing}"


def test_the_example_recipe_is_valid_in_both():
    assert schema_errors(lambda d: None) == []
    blocks.load_recipe(RECIPE)


def test_a_bad_block_field_is_one_error_at_its_place():
    def change(d):
        d["model"]["backbone"][1]["out_features"] = "x"
    assert schema_errors(change) == [(["model", "backbone", 1, "out_features"],
                                      "'x' is not of type 'integer'")]


def test_an_unknown_block_type_is_one_error_listing_the_names():
    def change(d):
        d["model"]["backbone"][1] = {"type": "conv3d"}
    [(where, message)] = schema_errors(change)
    assert where == ["model", "backbone", 1, "type"]
    assert message.startswith("'conv3d' is not one of ['adaptive_avgpool2d', ")


@pytest.mark.parametrize(("path", "value"), [
    (("model", "backbone", 1), {"out_features": 3}),
    (("model", "head"), {"classes": 3}),
    (("train", "optimizer"), {"lr": 0.1}),
])
def test_a_member_without_type_is_invalid_as_in_blocks(path, value):
    def change(d):
        parent = d
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = value
    assert schema_errors(change) == [(list(path), "'type' is a required property")]
    data = copy.deepcopy(RECIPE)
    change(data)
    with pytest.raises(blocks.SpecError):
        blocks.load_recipe(data)


def test_bare_names_where_blocks_takes_them():
    def change(d):
        d["train"]["optimizer"] = "adam"
        d["train"]["scheduler"] = None
    assert schema_errors(change) == []
    recipe = blocks.load_recipe({**RECIPE, "train": {"optimizer": "adam", "scheduler": "step"}})
    assert (recipe.train.optimizer.type, recipe.train.scheduler.type) == ("adam", "step")

    def bad(d):
        d["model"]["backbone"][0] = "linear"  # needs out_features: not a bare name
    [(where, message)] = schema_errors(bad)
    assert where == ["model", "backbone", 0] and message.startswith("'linear' is not one of [")


def test_an_unknown_scheduler_is_one_error():
    def change(d):
        d["train"]["scheduler"] = {"type": "cos"}
    assert schema_errors(change) == [(["train", "scheduler", "type"],
                                      "'cos' is not one of ['cosine', 'one_cycle', 'step']")]


def test_data_takes_exactly_one_source_in_the_schema_too():
    def two(d):
        d["data"] = {"dataset": "iris", "synthetic": {"samples": 10}}

    def one(d):
        d["data"] = {"csv": {"path": "x.csv", "target": "y"}, "npz": None}
    [(where, message)] = schema_errors(two)
    assert where == ["data"] and " is valid under each of " in message
    assert "'required': ['dataset']" in message and "'required': ['synthetic']" in message
    assert schema_errors(one) == []
    sources = [option["required"][0] for option in blocks.recipe_schema()["$defs"]["DataSpec"]["oneOf"]]
    assert sources[:4] == ["dataset", "csv", "npz", "synthetic"]


def test_an_optional_section_reports_inside_itself():
    def change(d):
        d["train"]["early_stopping"] = {"patience": "x"}
    assert schema_errors(change) == [(["train", "early_stopping", "patience"],
                                      "'x' is not of type 'integer'")]


def test_schema_is_valid_and_accepts_every_bundled_recipe():
    import yaml

    schema = blocks.recipe_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for name, path in blocks.bundled_recipes().items():
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert [e.message for e in validator.iter_errors(data)] == [], name
