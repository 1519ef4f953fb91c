"""`blocks.build`: registered, trainable, sized without hand arithmetic, shapes as predicted."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torchinfo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import blocks
from blocks.core.errors import ShapeError
from blocks.layers.catalogue import AvgPool1d, AvgPool2d, Conv1d, Conv2d, MaxPool1d, MaxPool2d

SEED_PARAMS = 216_650
RESNET18_PARAMS = 11_689_512  # torchvision.models.resnet18(): not installed here, so the number


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --- the seed model ------------------------------------------------------------------------------
def test_seed_cnn_matches_hand_written(seed_recipe):
    model = blocks.build(seed_recipe.model, seed=0)
    hand = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Flatten(), nn.Linear(32 * 26 * 26, 10))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == n_params(hand) == SEED_PARAMS
    assert [name for name, _ in model.named_parameters()] == [
        "backbone.0.weight", "backbone.0.bias", "head.weight", "head.bias"]
    assert model.backbone[0].weight.shape == hand[0].weight.shape
    assert model.head.weight.shape == hand[3].weight.shape == (10, 32 * 26 * 26)
    # same computation when the weights are the same
    hand.load_state_dict({"0.weight": model.backbone[0].weight, "0.bias": model.backbone[0].bias,
                          "3.weight": model.head.weight, "3.bias": model.head.bias})
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(model(x), hand(x))


@pytest.mark.parametrize("optimizer", [torch.optim.SGD, torch.optim.Adam])
def test_one_step_changes_every_parameter(seed_recipe, optimizer):
    model = blocks.build(seed_recipe.model, seed=0)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    opt = optimizer(model.parameters(), lr=0.01)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 1, 28, 28, generator=gen), torch.randint(0, 10, (8,), generator=gen)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert not torch.equal(before[name], p.detach()), f"{name} did not change"


def test_multi_head_parameter_names():
    model = blocks.build(blocks.load_recipe("multitask").model, seed=0)
    names = [name for name, _ in model.named_parameters()]
    assert "heads.kind.weight" in names and "heads.tags.bias" in names
    assert isinstance(model.heads, nn.ModuleDict)
    out = model(torch.randn(5, 16))
    assert set(out) == {"kind", "tags"}
    assert out["kind"].shape == (5, 4) and out["tags"].shape == (5, 3)


def test_head_with_hidden_layers_and_dropout():
    spec = blocks.ModelSpec(input={"shape": [6]},
                            head={"type": "softmax", "classes": 3, "hidden": [8, 4], "dropout": 0.2})
    model = blocks.build(spec, seed=0)
    assert [type(m).__name__ for m in model.head] == ["Linear", "ReLU", "Linear", "ReLU", "Dropout", "Linear"]
    assert model(torch.randn(2, 6)).shape == (2, 3)


# --- every block type ----------------------------------------------------------------------------
def case(shape, *backbone, dtype="float32"):
    return {"input": {"shape": list(shape), "dtype": dtype}, "backbone": list(backbone)}


BLOCK_CASES = {
    "linear": case([5], {"type": "linear", "out_features": 7}),
    "linear_seq": case([3, 5], {"type": "linear", "out_features": 7, "bias": False}, "flatten"),
    "conv1d": case([2, 20], {"type": "conv1d", "out_channels": 4, "kernel_size": 5, "stride": 2,
                             "dilation": 2, "padding": 1}, "flatten"),
    "conv2d": case([3, 12, 10], {"type": "conv2d", "out_channels": 6, "kernel_size": [3, 2],
                                 "stride": [2, 1], "padding": 1, "groups": 3},
                   "flatten"),
    "conv2d_same": case([2, 9, 9], {"type": "conv2d", "out_channels": 4, "kernel_size": 4,
                                    "padding": "same", "padding_mode": "reflect"}, "global_avgpool"),
    "batchnorm1d": case([6], "batchnorm1d"),
    "batchnorm1d_seq": case([3, 8], {"type": "batchnorm1d", "momentum": None}, "flatten"),
    "batchnorm2d": case([3, 5, 5], "batchnorm2d", "flatten"),
    "layernorm": case([4, 6], {"type": "layernorm", "dims": 2}, "flatten"),
    "dropout": case([6], {"type": "dropout", "p": 0.3}),
    "relu": case([6], "relu"),
    "gelu": case([6], {"type": "gelu", "approximate": "tanh"}),
    "silu": case([6], "silu"),
    "tanh": case([6], "tanh"),
    "sigmoid_act": case([6], "sigmoid_act"),
    "leaky_relu": case([6], {"type": "leaky_relu", "negative_slope": 0.2}),
    "identity": case([6], "identity"),
    "maxpool1d": case([2, 11], {"type": "maxpool1d", "kernel_size": 3, "stride": 2, "ceil_mode": True},
                      "flatten"),
    "maxpool2d": case([2, 9, 9], {"type": "maxpool2d", "kernel_size": 3, "dilation": 2, "padding": 1},
                      "flatten"),
    "avgpool1d": case([2, 10], {"type": "avgpool1d", "kernel_size": 4, "padding": 2}, "flatten"),
    "avgpool2d": case([2, 9, 7], {"type": "avgpool2d", "kernel_size": 2, "count_include_pad": False},
                      "flatten"),
    "adaptive_avgpool2d": case([3, 9, 7], {"type": "adaptive_avgpool2d", "output_size": [2, 3]}, "flatten"),
    "global_avgpool": case([3, 9, 7], "global_avgpool"),
    "global_avgpool_1d": case([3, 9], "global_avgpool"),
    "flatten": case([2, 3, 4], {"type": "flatten", "start_dim": 1}, "flatten"),
    "embedding": case([7], {"type": "embedding", "num_embeddings": 20, "embedding_dim": 4,
                            "padding_idx": 0}, "flatten", dtype="int64"),
    "residual_identity": case([4, 6, 6], {"type": "residual", "blocks": [
        {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1}, "relu"]}, "flatten"),
    "residual_projection": case([4, 7, 7], {"type": "residual", "blocks": [
        {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1, "stride": 2}]},
        "global_avgpool"),
    "residual_projection_1d": case([4, 9], {"type": "residual", "blocks": [
        {"type": "conv1d", "out_channels": 2, "kernel_size": 3, "padding": 1, "stride": 3}]}, "flatten"),
    "residual_projection_linear": case([6], {"type": "residual", "blocks": [
        {"type": "linear", "out_features": 3}]}),
    "residual_shortcut": case([4, 8, 8], {"type": "residual", "blocks": [
        {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1, "stride": 2}, "batchnorm2d"],
        "shortcut": [{"type": "conv2d", "out_channels": 8, "kernel_size": 1, "stride": 2, "bias": False},
                     "batchnorm2d"]}, "flatten"),
    "repeat": case([5], {"type": "repeat", "times": 3, "blocks": [{"type": "linear", "out_features": 5},
                                                                  "relu"]}),
    "repeat_nested": case([2, 16], {"type": "repeat", "times": 2, "blocks": [
        {"type": "residual", "blocks": [{"type": "conv1d", "out_channels": 4, "kernel_size": 3,
                                         "padding": 1, "stride": 2}]}]}, "flatten"),
    "torch_groupnorm": case([4, 5, 5], {"type": "torch", "layer": "GroupNorm",
                                        "kwargs": {"num_groups": 2, "num_channels": 4}}, "flatten"),
    "torch_upsample": case([2, 3, 3], {"type": "torch", "layer": "Upsample",
                                       "kwargs": {"scale_factor": 2, "mode": "nearest"}}, "flatten"),
    "torch_unflatten": case([12], {"type": "torch", "layer": "Unflatten",
                                   "kwargs": {"dim": 1, "unflattened_size": [3, 4]}},
                            {"type": "linear", "out_features": 2}, "flatten"),
}


def _module_at(model: nn.Module, path: str) -> nn.Module:
    """The module a LayerTrace path names: `backbone[1].blocks[0]` (residual body),
    `...shortcut[0]`, `...blocks#2[0]` (repetition 2 of a repeat)."""
    module = model
    for part in re.findall(r"[a-z_]+(?:#\d+)?|\[\d+\]", path):
        if part.startswith("["):
            module = module[int(part[1:-1])]
        elif part == "backbone":
            module = model.backbone
        elif part == "blocks":
            module = module.body
        elif part.startswith("blocks#"):
            module = module[int(part.split("#")[1])]
        else:
            module = getattr(module, part)
    return module


def _sample(shape, dtype, batch=3):
    if dtype == torch.int64:
        return torch.randint(0, 20, (batch, *shape))
    return torch.randn(batch, *shape, dtype=dtype)


def _check_model(spec: blocks.ModelSpec, batch: int = 3):
    model = blocks.build(spec, seed=0)
    report = spec.infer_shapes()
    seen: dict[str, tuple[int, ...]] = {}
    hooks = [
        _module_at(model, trace.path).register_forward_hook(
            lambda m, i, o, path=trace.path: seen.__setitem__(path, tuple(o.shape)))
        for trace in report.layers
    ]
    if spec.inputs is not None:  # a multi-input model: a batch of each input
        from blocks.exporters.multi_export import sample_inputs

        x = sample_inputs(model, batch)
    else:
        x = _sample(report.input_shape, spec.input.torch_dtype, batch)
    out = model(x)
    for hook in hooks:
        hook.remove()
    for trace in report.layers:
        assert seen[trace.path] == (batch, *trace.output_shape), trace.path
    outputs = out if isinstance(out, dict) else {"output": out}
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {
        k: (batch, *v) for k, v in report.heads.items()}
    stats = torchinfo.summary(model, input_data=[x], verbose=0)
    assert stats.total_params == n_params(model)
    return model, report


def test_every_builtin_block_type_is_covered():
    builtin = {"linear", "conv1d", "conv2d", "batchnorm1d", "batchnorm2d", "layernorm", "dropout",
               "relu", "gelu", "silu", "tanh", "sigmoid_act", "leaky_relu", "identity", "maxpool1d",
               "maxpool2d", "avgpool1d", "avgpool2d", "adaptive_avgpool2d", "global_avgpool",
               "flatten", "embedding", "residual", "repeat", "torch"}
    assert builtin <= set(blocks.block_types())
    covered = {b if isinstance(b, str) else b["type"] for c in BLOCK_CASES.values() for b in c["backbone"]}
    assert builtin <= covered


@pytest.mark.parametrize("name", sorted(BLOCK_CASES))
def test_block_type_builds_and_shapes_match(name):
    spec = blocks.ModelSpec(**BLOCK_CASES[name], head={"type": "softmax", "classes": 3})
    model, report = _check_model(spec)
    assert report.heads == {"output": (3,)}
    assert len(report.layers) >= len(spec.backbone)


def test_residual_shortcut_kinds():
    def shortcut(name):
        spec = blocks.ModelSpec(**BLOCK_CASES[name], head={"type": "softmax", "classes": 2})
        return blocks.build(spec).backbone[0].shortcut

    assert isinstance(shortcut("residual_identity"), nn.Identity)
    proj = shortcut("residual_projection")
    assert isinstance(proj, nn.Conv2d) and proj.kernel_size == (1, 1) and proj.stride == (2, 2)
    assert isinstance(shortcut("residual_projection_1d"), nn.Conv1d)
    assert isinstance(shortcut("residual_projection_linear"), nn.Linear)
    assert isinstance(shortcut("residual_shortcut"), nn.Sequential)


def test_repeat_has_independent_weights():
    spec = blocks.ModelSpec(**BLOCK_CASES["repeat"], head={"type": "softmax", "classes": 2})
    model = blocks.build(spec, seed=0)
    stages = list(model.backbone[0])
    assert len(stages) == 3
    assert stages[0][0].weight.data_ptr() != stages[1][0].weight.data_ptr()
    assert not torch.equal(stages[0][0].weight, stages[1][0].weight)


@pytest.mark.parametrize(("layer", "kwargs", "message"), [
    ("LSTM", {"input_size": 8, "hidden_size": 4, "batch_first": True}, "returns tuple, not a tensor"),
    ("MultiheadAttention", {"embed_dim": 8, "num_heads": 2}, "failed on this input"),
    ("Linear", {"in_features": 3, "out_features": 2}, "failed on this input"),
])
def test_torch_layer_that_cannot_run_is_a_shape_error(layer, kwargs, message):
    spec = blocks.ModelSpec(**case([4, 8], {"type": "torch", "layer": layer, "kwargs": kwargs}, "flatten"),
                            head={"type": "softmax", "classes": 2})
    with pytest.raises(blocks.SpecError, match=message) as info:
        spec.infer_shapes()
    assert info.value.problems[0].path == "model.backbone[0]"


ZOO_224 = {"resnet50", "efficientnet_b0", "convnext_tiny", "vit_b_16", "densenet121"}  # > 5 s each


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in ZOO_224 else n
                                  for n in sorted(blocks.bundled_recipes())])
def test_bundled_recipe_builds_and_shapes_match(name):
    recipe = blocks.load_recipe(name)
    _check_model(recipe.model, batch=1 if name == "resnet18" or name in ZOO_224 else 2)


# --- resnet18 ------------------------------------------------------------------------------------
def test_resnet18_is_torchvisions():
    model = blocks.build(blocks.load_recipe("resnet18").model, seed=0)
    assert n_params(model) == RESNET18_PARAMS
    modules = list(model.modules())
    convs = [m for m in modules if isinstance(m, nn.Conv2d)]
    assert len(convs) == 20  # stem + 8 blocks x 2 + 3 downsampling shortcuts
    assert sum(m.kernel_size == (1, 1) for m in convs) == 3
    assert sum(m.bias is None for m in convs) == 20
    assert sum(isinstance(m, nn.BatchNorm2d) for m in modules) == 20
    assert isinstance(model.head, nn.Linear) and model.head.in_features == 512
    assert model.head.out_features == 1000
    state = model.state_dict()
    assert sum(k.endswith("running_mean") for k in state) == 20
    assert sum(k.endswith("num_batches_tracked") for k in state) == 20
    report = model.shapes
    assert report.features == (512,)
    stem = [t for t in report.layers if t.depth == 0][:4]
    assert [t.output_shape for t in stem] == [(64, 112, 112)] * 3 + [(64, 56, 56)]


# --- seeds ---------------------------------------------------------------------------------------
def test_same_seed_same_weights_and_global_rng_untouched():
    spec = blocks.load_recipe("residual_cnn").model
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = blocks.build(spec, seed=0)
    b = blocks.build(spec, seed=0)
    assert torch.equal(torch.rand(3), expected_next)  # build(seed=...) used a forked RNG
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(pa, pb), name
    c = blocks.build(spec, seed=1)
    assert not torch.equal(a.backbone[0].weight, c.backbone[0].weight)


def test_build_accepts_recipe_dict_path_and_name(tmp_path):
    recipe = blocks.load_recipe("seed_cnn")
    path = tmp_path / "r.yaml"
    path.write_text(blocks.dump_recipe(recipe))
    models = [blocks.build(src, seed=0) for src in
              (recipe, recipe.model, "seed_cnn", path, recipe.model_dump(mode="json"),
               recipe.model.model_dump(mode="json"))]
    for model in models[1:]:
        assert torch.equal(model.head.weight, models[0].head.weight)


def test_dropped_model_is_freed_without_gc():
    import gc
    import weakref

    gc.disable()
    try:
        model = blocks.build("multitask")
        ref = weakref.ref(model)
        del model
        assert ref() is None  # no reference cycle keeps it (and its memory) alive
    finally:
        gc.enable()


def test_build_dtype_float64():
    model = blocks.build(blocks.load_recipe("tabular_mlp").model, dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert model(torch.randn(4, 30, dtype=torch.float64)).dtype == torch.float64


# --- shape arithmetic vs real torch modules ------------------------------------------------------
@st.composite
def window_cases(draw):
    kind = draw(st.sampled_from(["conv", "maxpool", "avgpool"]))
    n = draw(st.sampled_from([1, 2]))
    lengths = draw(st.lists(st.integers(1, 14), min_size=n, max_size=n))
    kernel = draw(st.integers(1, 7))
    stride = draw(st.integers(1, 4))
    dilation = draw(st.integers(1, 3)) if kind != "avgpool" else 1
    if kind == "conv":
        padding = draw(st.one_of(st.integers(0, 4), st.sampled_from(["same", "valid"])))
        fields = {"out_channels": 2, "kernel_size": kernel, "stride": stride, "padding": padding,
                  "dilation": dilation,
                  "padding_mode": draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))}
    else:
        fields = {"kernel_size": kernel, "stride": draw(st.one_of(st.none(), st.just(stride))),
                  "padding": draw(st.integers(0, 4)), "ceil_mode": draw(st.booleans())}
        if kind == "maxpool":
            fields["dilation"] = dilation
    return kind, n, tuple(lengths), fields


BLOCK_CLASSES = {("conv", 1): Conv1d, ("conv", 2): Conv2d, ("maxpool", 1): MaxPool1d,
                 ("maxpool", 2): MaxPool2d, ("avgpool", 1): AvgPool1d, ("avgpool", 2): AvgPool2d}


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(window_cases())
def test_window_shape_rule_matches_torch(window):
    kind, n, lengths, fields = window
    block = BLOCK_CLASSES[kind, n](**fields)
    shape = (2, *lengths)
    try:
        static = block.output_shape(shape)
    except ShapeError:
        static = None
    try:
        module = block.build(shape)
        real = tuple(module(torch.zeros(1, *shape)).shape[1:])
        if math.prod(real) == 0:
            real = None
    except (RuntimeError, ValueError):
        real = None
    assert static == real, (static, real)
