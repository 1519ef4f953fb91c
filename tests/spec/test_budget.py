"""Static size accounting: the `meta` count equals a real build, block counts include `repeat`."""

from __future__ import annotations

import pytest

import blocks
from blocks.spec.budget import check_blocks, footprint


def real_counts(spec: blocks.ModelSpec) -> tuple[int, int]:
    model = blocks.build(spec)
    return (sum(p.numel() for p in model.parameters()), sum(b.numel() for b in model.buffers()))


@pytest.mark.parametrize("name", sorted(blocks.bundled_recipes()))
def test_meta_count_equals_a_real_build(name):
    spec = blocks.load_recipe(name).model
    found = footprint(spec)
    assert (found.params, found.buffers) == real_counts(spec)


def test_repeats_whose_shapes_change_and_auto_projections_are_counted_exactly():
    spec = blocks.ModelSpec(input={"shape": [3, 16, 16]}, backbone=[
        {"type": "repeat", "times": 3, "blocks": [
            {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "stride": 2, "padding": 1},
            "batchnorm2d",
            {"type": "residual", "blocks": [{"type": "conv2d", "out_channels": 16, "kernel_size": 1}]}]},
        "global_avgpool"], head={"type": "softmax", "classes": 4})
    found = footprint(spec)
    assert (found.params, found.buffers) == real_counts(spec)
    # rep 1: conv 3->8 (224) + bn (16) + conv 8->16 (144) + projection 8->16 (144) = 528;
    # reps 2, 3: conv 16->8 (1,160) + 16 + 144 + 144 = 1,464 each; head 16->4: 68
    assert found.params == 528 + 2 * 1_464 + 68
    assert found.largest == ("model.backbone[0]", 3_456)


def test_block_count_expands_nested_repeats():
    spec = blocks.ModelSpec(input={"shape": [4]}, backbone=[
        {"type": "repeat", "times": 3, "blocks": [
            "relu", {"type": "repeat", "times": 4, "blocks": ["relu", "tanh"]}]}],
        head={"type": "softmax", "classes": 2})
    assert check_blocks(spec) == 1 + 3 * (1 + 1 + 4 * 2)
    assert len(spec.infer_shapes().layers) == check_blocks(spec)


def test_the_block_limit_can_be_raised(monkeypatch):
    spec = blocks.ModelSpec(input={"shape": [4]}, backbone=[
        {"type": "repeat", "times": 10_000, "blocks": ["relu", "relu"]}],
        head={"type": "softmax", "classes": 2})
    with pytest.raises(blocks.SpecError, match=r"model.backbone\[0\]: the model would have more than "
                       r"10,000 blocks once `repeat` is expanded \(here: a repeat of 2 block\(s\), "
                       r"10,000 times\); set BLOCKS_MAX_BLOCKS to raise the limit"):
        spec.infer_shapes()
    monkeypatch.setenv("BLOCKS_MAX_BLOCKS", "20001")
    assert len(spec.infer_shapes().layers) == 20_001


def test_blocks_inside_concat_branches_count_towards_the_limit():
    inner = {"type": "repeat", "times": 1000, "blocks": [
        {"type": "repeat", "times": 1000, "blocks": ["relu"]}]}
    spec = blocks.ModelSpec(input={"shape": [4]}, backbone=[
        {"type": "concat", "branches": [["relu"], [inner]]}], head={"type": "softmax", "classes": 2})
    with pytest.raises(blocks.SpecError, match=r"^model.backbone\[0\].branches\[1\]\[0\]: the model "
                       r"would have more than 10,000 blocks once `repeat` is expanded \(here: a "
                       r"repeat of 1,001 block\(s\), 1,000 times\)"):
        spec.infer_shapes()
    small = blocks.ModelSpec(input={"shape": [4]}, backbone=[
        {"type": "concat", "branches": [["relu", "tanh"], [{"type": "repeat", "times": 3,
                                                              "blocks": ["relu"]}]]}],
        head={"type": "softmax", "classes": 2})
    assert check_blocks(small) == len(small.infer_shapes().layers) == 1 + 2 + 1 + 3


def test_the_largest_part_is_named_by_its_spec_path():
    spec = blocks.ModelSpec(input={"shape": [4]}, backbone=[
        {"type": "linear", "out_features": 3}, "relu"],
        heads={"a": {"type": "softmax", "classes": 2}, "b": {"type": "sigmoid", "classes": 40}})
    assert footprint(spec, prefix="x").largest == ("x.heads.b", 160)
    spec.backbone[0].out_features = 50
    assert footprint(spec).largest == ("model.heads.b", 2_040)
    spec.heads["b"].classes = 2
    assert footprint(spec).largest == ("model.backbone[0]", 250)
    embedded = blocks.ModelSpec(input={"shape": [5]}, preprocess={
        "raw_shape": [3], "features": ["a", "b", "c"], "categories": {
            "c": [str(i) for i in range(99)]}, "embeddings": {"c": 3}},
        backbone=[{"type": "linear", "out_features": 40}], head={"type": "softmax", "classes": 2})
    assert footprint(embedded).largest == ("model.preprocess", 300)  # 100 vectors of 3
