"""Shape inference traces each block once: deeply nested composites validate in linear time."""

from __future__ import annotations

import time

import pytest

import blocks
from blocks.core.limits import MAX_BLOCK_NESTING


def nested(depth: int, kind: str = "residual") -> dict:
    block: object = "relu"
    for _ in range(depth):
        inner = [{"type": "linear", "out_features": 4}, block]
        block = ({"type": "repeat", "times": 1, "blocks": inner} if kind == "repeat"
                 else {"type": kind, "blocks": inner})
    return {"input": {"shape": [4]}, "backbone": [block], "head": {"type": "softmax", "classes": 2}}


@pytest.mark.parametrize("depth", [10, 20, 40])
def test_nested_residuals_validate_quickly_with_every_layer_traced(depth):
    start = time.perf_counter()
    spec = blocks.ModelSpec.model_validate(nested(depth))
    report = spec.infer_shapes()
    assert time.perf_counter() - start < 2.0  # was 6 s for 20 levels, 1.7x more per level
    assert len(report.layers) == 2 * depth + 1  # each residual and its linear, then the relu
    deepest = report.layers[-1]
    assert deepest.depth == depth
    assert deepest.path == "backbone[0]" + ".blocks[1]" * (depth - 1) + ".blocks[1]"


def test_nested_shapes_and_errors_are_located_at_depth():
    data = nested(30, "repeat")
    block = data["backbone"][0]
    for _ in range(29):
        block = block["blocks"][1]
    block["blocks"][0] = {"type": "conv2d", "out_channels": 2, "kernel_size": 3}  # on a [4] input
    with pytest.raises(blocks.SpecError, match=r"model\.backbone\[0\]" + r"\.blocks\[1\]" * 29
                       + r"\.blocks\[0\]"):
        blocks.ModelSpec.model_validate(data).infer_shapes()


def test_nesting_past_the_limit_is_refused_with_its_location():
    with pytest.raises(blocks.SpecError, match=f"nested more than {MAX_BLOCK_NESTING} deep"):
        blocks.build(nested(MAX_BLOCK_NESTING + 1))
    assert MAX_BLOCK_NESTING == 64
    assert blocks.build(nested(MAX_BLOCK_NESTING)) is not None
