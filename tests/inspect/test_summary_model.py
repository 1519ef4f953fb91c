"""`blocks.summarize`: exact totals, spec-aware rows, no side effects on the model."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torchinfo
from torch import nn

import blocks
from blocks.inspect.summary import Summary, SummaryError, compare, spec_module_name, summarize
from blocks.spec.registry import Block, register_block, unregister_block
from blocks.train.finetune import apply_freeze

BUNDLED = sorted(blocks.bundled_recipes())
TOKENWISE = {"convnext_tiny", "vit_b_16"}  # linears on [L, D] and attention: torchinfo undercounts


def _bitwise_snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (a.dtype == b.dtype and a.shape == b.shape and a.device == b.device
            and torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8)))


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_totals_exact_and_model_untouched(name: str) -> None:
    model = blocks.build(blocks.load_recipe(name).model, seed=0)
    model.train()
    before = _bitwise_snapshot(model)
    params_before = [p for p in model.parameters()]

    summary = summarize(model)

    assert summary.total_params == sum(p.numel() for p in model.parameters())
    assert summary.trainable_params == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert summary.param_bytes == sum(p.numel() * p.element_size() for p in model.parameters())
    # the top-level rows (backbone blocks and heads) add up to the total
    assert sum(r.params for r in summary.rows if r.depth == 0) == summary.total_params
    assert sum(r.mult_adds for r in summary.rows if r.depth == 0) == summary.mult_adds
    # the model is exactly as it was: mode, device, dtype, every bit of every tensor
    assert model.training and all(m.training for m in model.modules())
    assert model.device == torch.device("cpu")
    after = _bitwise_snapshot(model)
    assert before.keys() == after.keys()
    assert all(_same_bits(before[k], after[k]) for k in before)
    assert all(a is b for a, b in zip(params_before, model.parameters(), strict=True))
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())

    # JSON parses and round-trips; Markdown and the table carry the totals
    data = json.loads(summary.to_json())
    assert data["total_params"] == summary.total_params
    assert Summary.from_json(summary.to_json()) == summary
    assert f"Total params: {summary.total_params:,}" in str(summary)
    assert f"{summary.total_params:,}" in summary.to_markdown()


@pytest.mark.parametrize("name", BUNDLED)
def test_spec_summary_matches_built_model_and_torchinfo(name: str) -> None:
    recipe = blocks.load_recipe(name)
    from_spec = summarize(recipe)  # built on the meta device
    assert from_spec.probe_device == "meta"
    model = blocks.build(recipe.model, seed=0).eval()
    apply_freeze(model, recipe.train.freeze)  # a recipe's summary shows its `train.freeze`
    from_model = summarize(model)
    assert from_spec.to_dict() == from_model.to_dict()
    # mult-adds and activation sizes are torchinfo's own numbers on a real CPU run
    if recipe.model.inputs is not None:  # a zero batch of each input, as the summary probes
        x = {name: torch.zeros(1, *spec.sample_shape, dtype=getattr(torch, spec.dtype))
             for name, spec in recipe.model.inputs.items()}
    else:
        x = torch.zeros(1, *recipe.model.input.shape)
    real = torchinfo.summary(copy.deepcopy(model), input_data=[x], verbose=0)
    if name not in TOKENWISE:  # test_summary_mult_adds.py checks those against hand counts
        assert from_spec.mult_adds == real.total_mult_adds
    assert from_spec.activation_bytes == real.total_output_bytes
    assert from_spec.total_params == real.total_params


def test_rows_are_named_by_spec_paths_with_spec_shapes() -> None:
    model = blocks.build("residual_cnn", seed=0)
    summary = summarize(model)
    labels = [r.label for r in summary.rows]
    assert labels[0] == "backbone[0] conv2d"
    assert "backbone[3].blocks[0] conv2d" in labels
    assert "backbone[5].shortcut projection" in labels  # the automatic 1x1 conv has a row
    assert labels[-1] == "head softmax"
    nested = next(r for r in summary.rows if r.path == "backbone[3].blocks[0]")
    assert (nested.module, nested.depth, nested.output_shape) == ("backbone.3.body.0", 1, [32, 8, 8])
    # every row's output shape is what the real module produces
    seen: dict[str, list[int]] = {}
    probe = copy.deepcopy(model).eval()
    def record(name: str):
        def hook(module, args, out) -> None:
            seen.setdefault(name, list(out.shape[1:]))
        return hook

    for name, module in probe.named_modules():
        module.register_forward_hook(record(name))
    probe(torch.zeros(2, 1, 8, 8))
    for row in summary.rows:
        assert seen[row.module] == row.output_shape, row.label


def test_repeat_and_shortcut_paths_map_to_modules() -> None:
    spec = blocks.load_recipe("resnet18").model
    assert spec_module_name(spec, "backbone[4].blocks#1[0].blocks[3]") == "backbone.4.1.0.body.3"
    assert spec_module_name(spec, "backbone[5].shortcut[0]") == "backbone.5.shortcut.0"
    assert spec_module_name(spec, "backbone[5].blocks#0[0]") is None  # not a repeat
    summary = summarize(spec)
    modules = {r.path: r.module for r in summary.rows}
    assert modules["backbone[4].blocks#1[0].blocks[3]"] == "backbone.4.1.0.body.3"
    assert all(r.module is not None and r.params is not None for r in summary.rows)


def test_depth_limits_rows_not_totals() -> None:
    full = summarize("resnet18")
    top = summarize("resnet18", depth=0)
    assert all(r.depth == 0 for r in top.rows) and len(top.rows) < len(full.rows)
    assert top.total_params == full.total_params == 11_689_512


def test_multi_head_shows_every_head() -> None:
    summary = summarize("multitask")
    assert summary.outputs == {"kind": [4], "tags": [3]}
    heads = {r.label: r.output_shape for r in summary.rows if r.path.startswith("heads.")}
    assert heads == {"heads.kind softmax": [4], "heads.tags sigmoid": [3]}
    assert "Outputs: kind [N, 4], tags [N, 3]" in str(summary)


def test_plain_module_with_dict_outputs() -> None:
    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.trunk = nn.Linear(6, 12)
            self.a = nn.Linear(12, 2)
            self.b = nn.Linear(12, 5)

        def forward(self, x):
            h = self.trunk(x).relu()
            return {"a": self.a(h), "b": self.b(h)}

    summary = summarize(TwoHeads(), input_shape=[6])
    assert summary.outputs == {"a": [2], "b": [5]}
    assert [r.path for r in summary.rows] == ["trunk", "a", "b"]
    assert summary.rows[2].output_shape == [5]
    with pytest.raises(TypeError, match="input_shape"):
        summarize(TwoHeads())


class _TwiceLinear(nn.Module):
    """One square nn.Linear applied twice: its weights exist once."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.layer = nn.Linear(features, features)

    def forward(self, x):
        return self.layer(torch.relu(self.layer(x)))


@pytest.fixture
def tied_block():
    @register_block("tied_twice", replace=True)
    class TiedTwice(Block):
        def output_shape(self, shape):
            return shape

        def build(self, shape):
            return _TwiceLinear(shape[-1])

    yield TiedTwice
    unregister_block("tied_twice")


def test_module_used_twice_counted_once(tied_block) -> None:
    spec = blocks.ModelSpec.model_validate({
        "input": {"shape": [16]}, "backbone": [{"type": "tied_twice"}],
        "head": {"type": "softmax", "classes": 3}})
    model = blocks.build(spec, seed=0)
    summary = summarize(model)
    assert summary.total_params == 16 * 16 + 16 + 16 * 3 + 3
    assert summary.rows[0].label == "backbone[0] tied_twice"
    assert summary.rows[0].params == 16 * 16 + 16
    assert summary.rows[0].mult_adds == 2 * (16 * 16 + 16)  # compute happens twice


def test_tied_parameters_counted_once_where_torchinfo_counts_twice() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encode = nn.Linear(32, 32, bias=False)
            self.decode = nn.Linear(32, 32, bias=False)
            self.decode.weight = self.encode.weight

        def forward(self, x):
            return self.decode(self.encode(x))

    model = Tied()
    summary = summarize(model, input_shape=[32])
    assert summary.total_params == 32 * 32 == sum(p.numel() for p in model.parameters())
    assert summary.tied == [["encode.weight", "decode.weight"]]
    assert "Tied (counted once): encode.weight = decode.weight" in str(summary)
    naive = torchinfo.summary(copy.deepcopy(model), input_size=(1, 32), verbose=0)
    assert naive.total_params == 2 * 32 * 32  # the known torchinfo double count


def test_model_state_kept_for_float64_and_user_hooks() -> None:
    model = blocks.build("seed_cnn", seed=0).double()
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    summary = summarize(model)
    assert calls == []  # the user's hooks never see the probe
    assert next(model.parameters()).dtype == torch.float64
    assert summary.param_bytes == 8 * summary.total_params


def test_forward_without_meta_support_falls_back_to_a_copy() -> None:
    class NeedsValues(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(4, 4)

        def forward(self, x):
            scale = float(x.abs().max().item()) + 1.0  # data-dependent: no meta kernel can do it
            return self.layer(x) * scale

    model = NeedsValues().train()
    before = _bitwise_snapshot(model)
    summary = summarize(model, input_shape=[4])
    assert summary.probe_device == "cpu" and summary.total_params == 20
    assert model.training and all(_same_bits(before[k], v) for k, v in _bitwise_snapshot(model).items())
    with pytest.raises(SummaryError, match="meta"):
        summarize(model, input_shape=[4], probe="meta")


def test_forward_error_names_the_module_and_rows_before_it() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(10, 2))
    with pytest.raises(SummaryError) as info:
        summarize(model, input_shape=[4])
    err = info.value
    assert err.module == "2" and err.path == "2"
    assert [r.path for r in err.rows] == ["0", "1"]
    assert "failed in 2 Linear: RuntimeError:" in str(err)
    assert "0 Linear: [N, 4] -> [N, 8]" in str(err)


@pytest.fixture
def lying_block():
    @register_block("liar", replace=True)
    class Liar(Block):
        """Claims to keep the shape but builds a layer for a different width."""

        def output_shape(self, shape):
            return shape

        def build(self, shape):
            return nn.Sequential(nn.Linear(shape[-1] + 1, shape[-1]))

    yield Liar
    unregister_block("liar")


def test_spec_forward_error_names_the_block_path(lying_block, capsys, tmp_path) -> None:
    recipe = blocks.Recipe.model_validate({"model": {
        "input": {"shape": [8]},
        "backbone": [{"type": "linear", "out_features": 8}, "relu",
                     {"type": "residual", "blocks": [{"type": "liar"}]}],
        "head": {"type": "softmax", "classes": 2}}})
    with pytest.raises(SummaryError) as info:
        summarize(recipe)
    assert info.value.path == "backbone[2].blocks[0]"
    assert [r.label for r in info.value.rows] == ["backbone[0] linear", "backbone[1] relu"]
    assert "backbone[2].blocks[0] liar" in str(info.value)

    path = tmp_path / "liar.yaml"
    path.write_text(blocks.dump_recipe(recipe))
    from blocks.cli import main

    assert main(["summary", str(path)]) == 2
    err = capsys.readouterr().err
    assert "backbone[2].blocks[0] liar" in err and "Traceback" not in err


def test_compare_aligns_inserted_blocks() -> None:
    base = blocks.load_recipe("seed_cnn").model
    data = base.model_dump()
    data["backbone"][0]["out_channels"] = 64
    data["backbone"].insert(1, {"type": "batchnorm2d"})
    wider = blocks.ModelSpec.model_validate(data)
    comparison = compare(base, wider)
    pairs = [(r.a.label if r.a else None, r.b.label if r.b else None) for r in comparison.rows]
    assert pairs == [("backbone[0] conv2d", "backbone[0] conv2d"),
                     (None, "backbone[1] batchnorm2d"),
                     ("backbone[1] relu", "backbone[2] relu"),
                     ("backbone[2] flatten", "backbone[3] flatten"),
                     ("head softmax", "head softmax")]
    conv = comparison.rows[0]
    assert conv.params_delta == 320 and conv.mult_adds_delta == 320 * 26 * 26
    total = summarize(wider).total_params - summarize(base).total_params
    assert comparison.to_dict()["params_delta"] == total
    assert sum(r.params_delta for r in comparison.rows) == total
    assert "Δ params" in comparison.table()
    data["backbone"] = base.model_dump()["backbone"]
    data["head"]["hidden"] = [32]
    head_only = compare(base, blocks.ModelSpec.model_validate(data)).table(changed_only=True)
    assert "head softmax" in head_only and "relu" not in head_only
