"""Specs built in Python: fields, shorthand, shape inference report."""

from __future__ import annotations

import pydantic
import pytest
import torch

import blocks
from blocks.layers.catalogue import Conv2d, Flatten, ReLU
from blocks.spec.model import SINGLE_HEAD, ShapeReport


def seed_spec() -> blocks.ModelSpec:
    return blocks.ModelSpec(
        name="seed", input=blocks.InputSpec(shape=[1, 28, 28]),
        backbone=[Conv2d(out_channels=32, kernel_size=3), ReLU(), Flatten()],
        head=blocks.SoftmaxHead(classes=10))


def test_python_spec_equals_bundled_model():
    spec = seed_spec()
    bundled = blocks.load_recipe("seed_cnn").model
    assert spec.backbone == bundled.backbone
    assert spec.head == bundled.head
    assert spec.input == bundled.input


def test_block_type_filled_in_and_shorthand():
    conv = Conv2d(out_channels=4, kernel_size=3)
    assert conv.type == "conv2d"
    assert ReLU.shorthand and not Conv2d.shorthand
    assert ReLU().model_dump() == "relu"
    assert conv.model_dump(exclude_defaults=True) == {"type": "conv2d", "out_channels": 4, "kernel_size": 3}
    spec = blocks.ModelSpec(input={"shape": [4]}, backbone=["relu", {"type": "tanh"}],
                            head={"type": "sigmoid"})
    assert [b.type for b in spec.backbone] == ["relu", "tanh"]
    with pytest.raises(pydantic.ValidationError):
        Conv2d(out_channels=4, kernel_size=3, type="conv1d")


def test_infer_shapes_report():
    report = seed_spec().infer_shapes()
    assert isinstance(report, ShapeReport)
    assert report.input_shape == (1, 28, 28)
    assert [(t.path, t.block.type, t.input_shape, t.output_shape) for t in report.layers] == [
        ("backbone[0]", "conv2d", (1, 28, 28), (32, 26, 26)),
        ("backbone[1]", "relu", (32, 26, 26), (32, 26, 26)),
        ("backbone[2]", "flatten", (32, 26, 26), (21632,)),
    ]
    assert report.features == (21632,)
    assert report.heads == {SINGLE_HEAD: (10,)}


def test_nested_traces_have_paths_and_depths():
    spec = blocks.load_recipe("residual_cnn").model
    report = spec.infer_shapes()
    paths = {t.path: t for t in report.layers}
    assert paths["backbone[3]"].depth == 0
    assert paths["backbone[3].blocks[0]"].depth == 1
    assert paths["backbone[5]"].output_shape == (64, 4, 4)
    resnet = blocks.load_recipe("resnet18").model.infer_shapes()
    repeated = [t.path for t in resnet.layers if t.path.startswith("backbone[4].blocks#1")]
    assert repeated[0] == "backbone[4].blocks#1[0]"


def test_multi_head_spec():
    spec = blocks.ModelSpec(input={"shape": [8]}, backbone=[{"type": "linear", "out_features": 4}],
                            heads={"cls": {"type": "softmax", "classes": 3},
                                   "flags": {"type": "sigmoid", "classes": 2}})
    assert spec.multi_head
    assert list(spec.head_specs) == ["cls", "flags"]
    assert spec.infer_shapes().heads == {"cls": (3,), "flags": (2,)}
    single = seed_spec()
    assert not single.multi_head and list(single.head_specs) == [SINGLE_HEAD]


def test_validate_assignment_and_unknown_keys():
    spec = seed_spec()
    spec.backbone[0].out_channels = 8
    assert spec.infer_shapes().features == (8 * 26 * 26,)
    with pytest.raises(pydantic.ValidationError):
        spec.backbone[0].out_channels = 0
    with pytest.raises(pydantic.ValidationError, match="extra_forbidden|Extra inputs"):
        blocks.InputSpec(shape=[3], dtyp="float32")


def test_input_dtypes():
    assert blocks.InputSpec(shape=[2]).torch_dtype == torch.float32
    assert blocks.InputSpec(shape=[2], dtype="int64").torch_dtype == torch.int64
    model = blocks.build(blocks.ModelSpec(input={"shape": [3], "dtype": "float64"},
                                          head={"type": "softmax", "classes": 2}))
    assert model.head.weight.dtype == torch.float64


def test_recipe_defaults():
    recipe = blocks.Recipe(model=seed_spec())
    assert recipe.data is None
    assert recipe.train == blocks.TrainSpec()
    assert recipe.source_path is None


def test_head_options_validate():
    with pytest.raises(pydantic.ValidationError, match="class_weights has 2 entries"):
        blocks.SoftmaxHead(classes=3, class_weights=[1, 2])
    with pytest.raises(pydantic.ValidationError, match="labels has 1 names"):
        blocks.SoftmaxHead(classes=2, labels=["a"])
    with pytest.raises(pydantic.ValidationError):
        blocks.SigmoidHead(threshold=1.0)
    with pytest.raises(pydantic.ValidationError):
        blocks.SoftmaxHead(classes=2, label_smoothing=1.0)


def test_data_spec_one_source():
    assert blocks.DataSpec(dataset="iris").dataset == "iris"
    with pytest.raises(pydantic.ValidationError, match="exactly one data source"):
        blocks.DataSpec(dataset="iris", synthetic={})


def test_the_model_spec_module_knows_nothing_of_data_or_training():
    """Specs compose upward: the recipe (blocks.spec.recipe) holds model, data and train."""
    import ast
    from pathlib import Path

    source = Path(blocks.spec.model.__file__).read_text()
    imported = {node.module for node in ast.walk(ast.parse(source))
                if isinstance(node, ast.ImportFrom) and node.module}
    assert not {m for m in imported if m.startswith(("blocks.data", "blocks.train"))}
    assert blocks.spec.Recipe is blocks.Recipe  # still reachable where it used to be
