"""Custom block types: `@register_block`, the plugin entry-point group, and name clashes."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch
from pydantic import PositiveInt
from torch import nn

import blocks
import blocks.spec.registry
from blocks.core.errors import ShapeError
from blocks.inspect.summary import summarize

GATED_RECIPE = """\
model:
  name: gated
  input: {shape: [12]}
  backbone:
    - {type: my_gated, features: 6}
    - {type: my_gated, features: 4, bias: false}
  head: {type: softmax, classes: 3}
"""


@pytest.fixture
def gated():
    """Register `my_gated` for one test and remove it afterwards."""

    @blocks.register_block("my_gated")
    class Gated(blocks.Block):
        """A gated linear unit: Linear(in, 2 * features) then GLU."""

        features: PositiveInt
        bias: bool = True

        def output_shape(self, shape):
            if len(shape) != 1:
                raise ShapeError(f"expects [features] per sample, got {list(shape)}")
            return (self.features,)

        def build(self, shape):
            return nn.Sequential(nn.Linear(shape[0], 2 * self.features, bias=self.bias), nn.GLU())

    yield Gated
    blocks.spec.registry.unregister_block("my_gated")


def test_custom_block_from_yaml_builds_and_summarises(gated):
    assert "my_gated" in blocks.block_types()
    recipe = blocks.load_recipe(GATED_RECIPE)
    block = recipe.model.backbone[0]
    assert isinstance(block, gated) and block.type == "my_gated" and block.features == 6
    model = blocks.build(recipe.model, seed=0)
    assert model(torch.randn(5, 12)).shape == (5, 3)
    assert [t.output_shape for t in model.shapes.layers] == [(6,), (4,)]
    expected = (12 * 12 + 12) + (6 * 8) + (4 * 3 + 3)
    assert sum(p.numel() for p in model.parameters()) == expected
    summary = summarize(model)
    assert summary.total_params == expected
    assert [(row.path, row.type, row.params) for row in summary.rows[:2]] == [
        ("backbone[0]", "my_gated", 12 * 12 + 12), ("backbone[1]", "my_gated", 6 * 8)]
    assert "backbone[0] my_gated" in str(summary)
    assert blocks.load_recipe(blocks.dump_recipe(recipe)) == recipe


def test_custom_block_in_python_and_schema(gated):
    spec = blocks.ModelSpec(input={"shape": [8]}, backbone=[gated(features=2)],
                            head={"type": "softmax", "classes": 2})
    assert spec.backbone[0].type == "my_gated"
    schema = blocks.recipe_schema()
    definition = schema["$defs"]["block.my_gated"]
    assert set(definition["properties"]) == {"type", "features", "bias"}
    assert definition["properties"]["type"]["const"] == "my_gated"


def test_custom_block_errors_are_located(gated):
    text = GATED_RECIPE.replace("features: 6}", "featurs: 6}")
    with pytest.raises(blocks.SpecError) as info:
        blocks.load_recipe(text)
    located = {(p.path, p.line, p.column, p.type) for p in info.value.problems}
    # one typo, one error: the misspelt key, not also the required key it was meant to be
    assert located == {("model.backbone[0].featurs", 5, 24, "extra_forbidden")}
    assert "did you mean 'features'?" in str(info.value)
    with pytest.raises(blocks.SpecError, match=r"model.backbone\[1\]: my_gated with input shape \[1, 4, 4\]"):
        blocks.ModelSpec(input={"shape": [1, 4, 4]}, backbone=["relu", {"type": "my_gated", "features": 2}],
                         head={"type": "softmax", "classes": 2}).infer_shapes()


def test_name_clash_is_an_error(gated):
    with pytest.raises(blocks.RegistryError, match="'my_gated' is already registered"):
        blocks.register_block("my_gated")(type("Other", (blocks.Block,), {}))
    with pytest.raises(blocks.RegistryError, match="already registered"):
        blocks.register_block("relu")(type("MyRelu", (blocks.Block,), {}))
    replaced = blocks.register_block("my_gated", replace=True)(gated)
    assert blocks.block_types()["my_gated"] is replaced


@pytest.mark.parametrize("name", ["MyGated", "my-gated", "2gated"])
def test_bad_names(name):
    with pytest.raises(blocks.RegistryError, match="lower-case identifier"):
        blocks.register_block(name)


def test_register_needs_a_block_subclass():
    with pytest.raises(blocks.RegistryError, match="needs a blocks.Block subclass"):
        blocks.register_block("not_a_block")(nn.Linear)
    assert "not_a_block" not in blocks.block_types()


def test_block_without_rules_says_so():
    with pytest.raises(blocks.RegistryError, match="Lazy must define output_shape and build"):
        @blocks.register_block("lazy_author")
        class Lazy(blocks.Block):
            pass

    assert "lazy_author" not in blocks.block_types()

    class HalfDone(blocks.Block):
        def output_shape(self, shape):
            return shape

    with pytest.raises(blocks.RegistryError, match="must define build"):
        blocks.register_block("half_done")(HalfDone)


# --- entry-point plugins -------------------------------------------------------------------------
PLUGIN_MODULE = """\
from torch import nn
import blocks


class Scale(blocks.Block):
    factor: float = 2.0

    def output_shape(self, shape):
        return shape

    def build(self, shape):
        return nn.Identity()
"""


def _install_plugin(root, entry_points: str) -> None:
    (root / "blocks_test_plugin.py").write_text(PLUGIN_MODULE)
    (root / "blocks_test_broken.py").write_text("raise ImportError('this plugin is broken')\n")
    info = root / "blocks_test_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: blocks-test-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(blocks.spec.registry, "_plugins_loaded", False)
    yield tmp_path
    for name in ("plugin_scale", "plugin_broken"):
        blocks.spec.registry.unregister_block(name)
    for module in ("blocks_test_plugin", "blocks_test_broken"):
        sys.modules.pop(module, None)


def test_entry_point_plugin_is_loaded(plugin_path):
    _install_plugin(plugin_path, """\
        [blocks.blocks]
        plugin_scale = blocks_test_plugin:Scale
        """)
    loaded = blocks.load_plugins()
    assert "plugin_scale" in loaded
    assert "plugin_scale" in blocks.block_types()
    spec = blocks.ModelSpec(input={"shape": [4]}, backbone=[{"type": "plugin_scale", "factor": 3}],
                            head={"type": "softmax", "classes": 2})
    assert blocks.build(spec)(torch.randn(2, 4)).shape == (2, 2)
    assert "block.plugin_scale" in blocks.recipe_schema()["$defs"]
    assert blocks.load_plugins() == []  # once only


def test_broken_plugin_warns_and_others_still_load(plugin_path):
    _install_plugin(plugin_path, """\
        [blocks.blocks]
        plugin_broken = blocks_test_broken:Nope
        plugin_scale = blocks_test_plugin:Scale
        """)
    with pytest.warns(UserWarning, match=r"blocks plugin 'plugin_broken' .* failed to load: this plugin is broken"):
        loaded = blocks.load_plugins()
    assert "plugin_scale" in loaded and "plugin_broken" not in loaded
    assert "plugin_broken" not in blocks.block_types()
