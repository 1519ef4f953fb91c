"""Static parameter counts (`Block.parameter_count`): every built-in rule equals a real build,
and the size check of validate/build builds nothing for models of built-in blocks."""

from __future__ import annotations

import typing

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import blocks
import blocks.spec.registry
from blocks.builder.model import BlocksModel
from blocks.cli import main
from blocks.layers.docs import describe
from blocks.spec import counts
from blocks.spec.budget import footprint
from blocks.spec.heads import SigmoidHead, SoftmaxHead
from blocks.spec.model import ELEMENT_SIZES, InputSpec
from blocks.spec.preprocess import Preprocessing, PreprocessSpec
from blocks.spec.registry import Block, block_types, get_block_type

#: Block types whose module is unknown without building it: a meta build counts them.
UNKNOWN = {"torch", "timm", "torchvision"}
ELEMENTWISE = ["relu", "gelu", "silu", "tanh", "sigmoid_act", "leaky_relu", "identity",
               "hardswish", "hardsigmoid", "dropout", "drop_path"]
CONV = {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1}

# Per block type: (per-sample input shape, fields) cases, beside the catalogue's own example.
CASES: dict[str, list[tuple[list[int], dict]]] = {
    "linear": [([5], {"out_features": 7}), ([3, 5], {"out_features": 2, "bias": False}),
               ([2, 3, 9], {"out_features": 4})],
    "embedding": [([7], {"num_embeddings": 20, "embedding_dim": 4, "padding_idx": 0}),
                  ([3, 2], {"num_embeddings": 5, "embedding_dim": 3, "max_norm": 1.0})],
    "bag_of_words": [([7], {"num_embeddings": 20, "embedding_dim": 4}),
                     ([3], {"num_embeddings": 5, "embedding_dim": 3, "padding_idx": 4})],
    "text_conv": [([7, 4], {"out_channels": 5, "kernel_size": 3}),
                  ([9, 2], {"out_channels": 3, "kernel_size": 4})],
    "conv1d": [([2, 20], {"out_channels": 4, "kernel_size": 5, "stride": 2, "dilation": 2}),
               ([6, 9], {"out_channels": 9, "kernel_size": [3], "groups": 3, "bias": False}),
               ([4, 10], {"out_channels": 4, "kernel_size": 3, "padding": "same", "groups": 4})],
    "conv2d": [([3, 12, 10], {"out_channels": 6, "kernel_size": [3, 2], "stride": [2, 1],
                              "padding": 1, "groups": 3}),
               ([4, 8, 8], {"out_channels": 8, "kernel_size": 1, "bias": False}),
               ([2, 9, 9], {"out_channels": 4, "kernel_size": 4, "padding": "same",
                            "padding_mode": "reflect"})],
    "batchnorm1d": [([6], {}), ([3, 8], {"affine": False}), ([5], {"track_running_stats": False}),
                    ([4, 2], {"affine": False, "track_running_stats": False, "momentum": None})],
    "batchnorm2d": [([3, 5, 5], {}), ([7, 2, 2], {"affine": False}),
                    ([2, 3, 3], {"track_running_stats": False})],
    "layernorm": [([4, 6], {"dims": 2}), ([6], {}), ([3, 4, 5], {"dims": 3, "bias": False}),
                  ([3, 4], {"elementwise_affine": False})],
    **{name: [([6], {}), ([2, 3, 4], {})] for name in ELEMENTWISE},
    "maxpool1d": [([2, 11], {"kernel_size": 3, "stride": 2, "ceil_mode": True})],
    "maxpool2d": [([2, 9, 9], {"kernel_size": 3, "dilation": 2, "padding": 1})],
    "avgpool1d": [([2, 10], {"kernel_size": 4, "padding": 2})],
    "avgpool2d": [([2, 9, 7], {"kernel_size": 2, "count_include_pad": False})],
    "adaptive_avgpool2d": [([3, 9, 7], {"output_size": [2, 3]})],
    "global_avgpool": [([3, 9, 7], {}), ([3, 9], {})],
    "flatten": [([2, 3, 4], {"start_dim": 1}), ([5], {})],
    "residual": [
        ([8, 6, 6], {"blocks": [CONV, "batchnorm2d", "relu"]}),  # identity shortcut
        ([4, 7, 7], {"blocks": [{**CONV, "stride": 2}]}),  # strided 1x1 conv projection
        ([4, 9], {"blocks": [{"type": "conv1d", "out_channels": 2, "kernel_size": 3,
                              "padding": 1, "stride": 3}]}),  # conv1d projection
        ([6], {"blocks": [{"type": "linear", "out_features": 3}]}),  # linear projection
        ([4, 8, 8], {"blocks": [{**CONV, "stride": 2}, "batchnorm2d"],
                     "shortcut": [{**CONV, "kernel_size": 1, "padding": 0, "stride": 2,
                                   "bias": False}, "batchnorm2d"]})],
    "repeat": [
        ([5], {"times": 3, "blocks": [{"type": "linear", "out_features": 5}, "batchnorm1d"]}),
        ([3, 16, 16], {"times": 3, "blocks": [{**CONV, "stride": 2}, "batchnorm2d"]}),
        ([5], {"times": 4, "blocks": [{"type": "linear", "out_features": 6}]}),  # 5->6, then 6->6
        ([2, 16], {"times": 2, "blocks": [{"type": "repeat", "times": 2, "blocks": [
            {"type": "residual", "blocks": [{"type": "conv1d", "out_channels": 4,
                                             "kernel_size": 3, "padding": 1, "stride": 2}]}]}]})],
    "permute": [([3, 4, 5], {"dims": [1, 2, 0]})],
    "reshape": [([48], {"shape": [3, -1]})],
    "unflatten": [([12, 5], {"dim": 0, "sizes": [3, 4]})],
    "layernorm2d": [([6, 4, 4], {}), ([6, 5], {"bias": False}),
                    ([3, 2, 2], {"elementwise_affine": False})],
    "concat": [([3, 8, 8], {"branches": [[CONV, "batchnorm2d"],
                                         [{**CONV, "out_channels": 4, "bias": False}]]}),
               ([6], {"branches": [[{"type": "linear", "out_features": 2}], ["identity"]]})],
    "dense_concat": [([8, 6, 6], {"blocks": ["batchnorm2d", "relu", {**CONV, "out_channels": 4}]})],
    "squeeze_excite": [([72, 4, 4], {"ratio": 4, "divisor": 8}),
                       ([16, 3, 3], {"squeeze_channels": 5, "activation": "silu"})],
    "softmax_act": [([3, 4], {"dim": 0})],
    "layer_scale": [([6, 4, 4], {}), ([5, 7], {"axis": -1}), ([5, 7, 2], {"axis": 1})],
    "patch_embed": [([3, 32, 32], {"dim": 16, "patch_size": 8}),
                    ([2, 12, 8], {"dim": 6, "patch_size": [4, 2], "bias": False})],
    "class_token": [([16, 32], {})],
    "position_embedding": [([17, 32], {})],
    "transformer_encoder": [([17, 32], {"heads": 4}), ([5, 12], {"heads": 3, "mlp_dim": 7}),
                            ([4, 10], {"heads": 2, "mlp_ratio": 1.5, "drop_path": 0.1})],
    "select_token": [([17, 32], {}), ([4, 6], {"index": -1})],
    "token_mean": [([17, 32], {})],
}


def builtin_types() -> dict[str, type[Block]]:
    """The block types `blocks` itself registers (tests may register others for a while)."""
    return {name: cls for name, cls in block_types().items() if cls.__module__.startswith("blocks.")}


def module_counts(module: nn.Module) -> tuple[int, int]:
    return sum(p.numel() for p in module.parameters()), sum(b.numel() for b in module.buffers())


def examples() -> list[tuple[str, list[int], dict]]:
    """Every case above, and each type's catalogue example (`blocks blocks NAME`)."""
    found = [(name, shape, {"type": name, **fields}) for name, cases in CASES.items()
             for shape, fields in cases]
    for name in sorted(builtin_types().keys() - UNKNOWN):
        doc = describe(name)
        example = {"type": name} if isinstance(doc.example, str) else doc.example
        found.append((name, doc.input_shape, example))
    return found


def test_every_builtin_type_has_a_rule_and_cases():
    assert set(CASES) == builtin_types().keys() - UNKNOWN
    for name in UNKNOWN:
        assert get_block_type(name).parameter_count is Block.parameter_count


@pytest.mark.parametrize(("name", "shape", "spec"), examples(),
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(examples())])
def test_static_count_equals_the_built_module(name, shape, spec):
    block = get_block_type(name).model_validate(spec)
    block.output_shape(tuple(shape))  # the case is a valid one
    found = counts.of(block, tuple(shape))
    assert found is not None
    assert found == module_counts(block.build(tuple(shape)))


def test_batchnorm_counts_all_three_buffers():
    block = get_block_type("batchnorm2d")()
    assert counts.of(block, (16, 4, 4)) == (32, 33)  # running mean, var, num_batches_tracked


def test_composites_of_unknown_blocks_are_unknown_and_still_counted_exactly():
    torch_layer = {"type": "torch", "layer": "GroupNorm", "kwargs": {"num_groups": 2, "num_channels": 4}}
    spec = blocks.ModelSpec(input={"shape": [4, 5, 5]}, backbone=[
        {"type": "residual", "blocks": [torch_layer]},
        {"type": "repeat", "times": 50, "blocks": [torch_layer, "batchnorm2d"]},
        {"type": "concat", "branches": [[torch_layer], ["identity"]]}, "flatten"],
        head={"type": "softmax", "classes": 3})
    for block in spec.backbone[:3]:
        assert counts.of(block, (4, 5, 5)) is None
    found = footprint(spec)
    with torch.device("meta"):
        assert (found.params, found.buffers) == module_counts(BlocksModel(spec))


@pytest.mark.parametrize("head", [
    SoftmaxHead(classes=3), SoftmaxHead(classes=4, hidden=[8, 5], dropout=0.2),
    SigmoidHead(), SigmoidHead(classes=3, hidden=[2])])
def test_head_counts_equal_the_built_head(head):
    assert head.parameter_count((6,)) == module_counts(head.build((6,)))


@pytest.mark.parametrize(("spec", "input_shape"), [
    ({"raw_shape": [4]}, [4]),
    ({"raw_shape": [2, 3], "standardize": True, "impute": "mean"}, [6]),
    ({"raw_shape": [3], "features": ["a", "b", "c"], "categories": {"b": ["x", "y", "z"]},
      "standardize": True}, [5]),
    ({"raw_shape": [4], "features": ["a", "b", "c", "d"],
      "categories": {"b": ["x", "y"], "d": ["p", "q", "r"]}, "embeddings": {"d": 2},
      "impute": "median"}, [6]),
    ({"raw_shape": [3, 4, 4], "channel_mean": [0.1, 0.2, 0.3], "channel_std": [1.0, 2.0, 3.0]},
     [3, 4, 4]),
    ({"raw_shape": [64], "resize_from": [1, 8, 8], "scale": 0.0625}, [1, 16, 16]),
])
def test_preprocessing_counts_equal_the_module(spec, input_shape):
    preprocess = PreprocessSpec(**spec)
    assert preprocess.check_fits(tuple(input_shape)) is None
    module = Preprocessing(preprocess, tuple(input_shape))
    assert preprocess.parameter_count() == module_counts(module)


def test_footprint_counts_the_preprocessing():
    spec = blocks.ModelSpec(input={"shape": [5]}, preprocess={
        "raw_shape": [3], "features": ["a", "b", "c"], "categories": {"b": ["x", "y", "z"]},
        "embeddings": {"b": 3}, "standardize": True}, head={"type": "softmax", "classes": 2})
    found = footprint(spec)
    assert (found.params, found.buffers) == module_counts(blocks.build(spec))
    assert (found.params, found.buffers) == (4 * 3 + 5 * 2 + 2, 3 + 3 + 3)


# --- the footprint of built-in blocks builds nothing ---------------------------------------------
@pytest.fixture
def no_builds(monkeypatch):
    """Every built-in block type's and head's `build` replaced by a spy; yields the calls."""
    calls: list[str] = []

    def spy(self, shape):
        calls.append(self.type)
        raise AssertionError(f"{self.type}.build called")

    for cls in [*builtin_types().values(), SoftmaxHead, SigmoidHead]:
        monkeypatch.setattr(cls, "build", spy)
    yield calls


@pytest.mark.parametrize("name", sorted(blocks.bundled_recipes()))
def test_recipe_footprint_is_static_and_equals_the_model(name, monkeypatch):
    spec = blocks.load_recipe(name).model
    with monkeypatch.context() as patch:
        calls: list[str] = []
        for cls in [*builtin_types().values(), SoftmaxHead, SigmoidHead]:
            patch.setattr(cls, "build", lambda self, shape: calls.append(self.type))
        found = footprint(spec)
        assert calls == []
    with torch.device("meta"):
        assert (found.params, found.buffers) == module_counts(BlocksModel(spec))
    if name == "resnet18":
        assert found.params == 11_689_512  # torchvision's resnet18


@pytest.mark.parametrize("name", ["seed_cnn", "resnet18", "vit_b_16", "tabular_mlp"])
def test_validate_builds_nothing(name, no_builds, capsys):
    assert main(["validate", name]) == 0
    assert no_builds == []
    assert " parameters, outputs " in capsys.readouterr().out


def test_a_plugin_subclass_that_changes_build_is_counted_by_building_it():
    @blocks.register_block("wide_linear")
    class WideLinear(get_block_type("linear")):
        """A linear layer with an extra learned offset per feature (a different module)."""

        def build(self, shape):
            module = super().build(shape)
            module.offset = nn.Parameter(torch.zeros(self.out_features))
            return module

    try:
        block = WideLinear(out_features=3)
        assert counts.of(block, (4,)) is None
        spec = blocks.ModelSpec(input={"shape": [4]}, backbone=[block],
                                head={"type": "softmax", "classes": 2})
        assert footprint(spec).params == 4 * 3 + 3 + 3 + (3 * 2 + 2)
    finally:
        blocks.spec.registry.unregister_block("wide_linear")


def test_a_plugin_rule_replaces_its_meta_build():
    built: list[tuple[int, ...]] = []

    @blocks.register_block("scaled_linear")
    class ScaledLinear(blocks.Block):
        """A linear layer and a running scale buffer."""

        out_features: int

        def output_shape(self, shape):
            return (self.out_features,)

        def build(self, shape):
            built.append(tuple(shape))
            module = nn.Linear(shape[0], self.out_features)
            module.register_buffer("scale", torch.ones(self.out_features))
            return module

        def parameter_count(self, shape):
            return shape[0] * self.out_features + self.out_features, self.out_features

    try:
        spec = blocks.ModelSpec(input={"shape": [4]}, backbone=[{"type": "scaled_linear",
                                                                  "out_features": 3}],
                                head={"type": "softmax", "classes": 2})
        found = footprint(spec)
        assert built == []
        assert (found.params, found.buffers) == module_counts(blocks.build(spec)) == (15 + 8, 3)
    finally:
        blocks.spec.registry.unregister_block("scaled_linear")


# --- the arithmetic, against torch, over many sizes ----------------------------------------------
small = st.integers(1, 24)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_linear_conv_and_norm_rules_match_torch_at_any_size(data):
    kind = data.draw(st.sampled_from(["linear", "conv1d", "conv2d", "batchnorm1d", "batchnorm2d",
                                      "layernorm", "layernorm2d"]))
    if kind == "linear":
        shape = tuple(data.draw(st.lists(small, min_size=1, max_size=3)))
        spec = {"out_features": data.draw(small), "bias": data.draw(st.booleans())}
    elif kind.startswith("conv"):
        n = int(kind[-2])
        groups = data.draw(st.integers(1, 4))
        shape = (groups * data.draw(st.integers(1, 6)), *[data.draw(st.integers(7, 12))] * n)
        kernel = data.draw(st.lists(st.integers(1, 5), min_size=n, max_size=n))
        spec = {"out_channels": groups * data.draw(st.integers(1, 6)), "groups": groups,
                "kernel_size": kernel if data.draw(st.booleans()) else kernel[0],
                "bias": data.draw(st.booleans())}
    elif kind.startswith("batchnorm"):
        shape = (data.draw(small), *[3] * (2 if kind == "batchnorm2d" else data.draw(st.integers(0, 1))))
        spec = {"affine": data.draw(st.booleans()), "track_running_stats": data.draw(st.booleans())}
    else:
        shape = tuple(data.draw(st.lists(small, min_size=2, max_size=3)))
        spec = {"elementwise_affine": data.draw(st.booleans()), "bias": data.draw(st.booleans())}
        if kind == "layernorm":
            spec["dims"] = data.draw(st.integers(1, len(shape)))
    block = get_block_type(kind).model_validate({"type": kind, **spec})
    block.output_shape(shape)
    with torch.device("meta"):
        module = block.build(shape)
    assert counts.of(block, shape) == module_counts(module)


@pytest.mark.parametrize("dtype", typing.get_args(InputSpec.model_fields["dtype"].annotation))
def test_element_sizes_known_without_torch_match_torch(dtype):
    assert ELEMENT_SIZES[dtype] == getattr(torch, dtype).itemsize
    spec = blocks.ModelSpec(input={"shape": [3], "dtype": dtype}, backbone=[
        {"type": "embedding", "num_embeddings": 4, "embedding_dim": 2}, "flatten"]
        if dtype == "int64" else [], head={"type": "softmax", "classes": 2})
    model = blocks.build(spec)
    assert footprint(spec).element_size == next(model.parameters()).element_size()
