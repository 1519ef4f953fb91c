"""Every bundled recipe exports to every format, and each file, reloaded in a fresh process
where `blocks` cannot be imported, reproduces the built model's outputs (onnxruntime within
1e-5, torch.export and TorchScript within 1e-6, the Python source bit for bit) at batch sizes
other than the one the graphs were exported with."""

from __future__ import annotations

import pytest
from export_support import assert_reloads_match, export_all, reload_without_blocks

import blocks

FAST = ("seed_cnn", "tabular_mlp", "residual_cnn", "multitask")


def test_bundled_recipes_cover_the_export_tests(bundled_names):
    assert {*FAST, "resnet18"} <= set(bundled_names)


def test_mlp_and_multi_head_probabilities_reload_without_blocks(tmp_path):
    """The quick check: one single-head model in every format, and the multi-head model with
    its softmax and sigmoid appended."""
    model = blocks.build(blocks.load_recipe("tabular_mlp").model, seed=0)
    manifest = export_all(model, tmp_path / "tabular_mlp")
    model = blocks.build(blocks.load_recipe("multitask").model, seed=0)
    manifest += export_all(model, tmp_path / "multitask-proba", probabilities=True,
                           formats=("onnx", "python", "pt2"))
    assert len(manifest) == 7
    assert_reloads_match(manifest, reload_without_blocks(manifest, tmp_path))


@pytest.mark.slow
def test_small_recipes_export_and_reload_without_blocks(tmp_path):
    manifest = []
    others = [name for name in FAST if name != "tabular_mlp"]  # that one is in the quick test
    for name in others:
        model = blocks.build(blocks.load_recipe(name).model, seed=0)
        manifest += export_all(model, tmp_path / name)
    assert len(manifest) == 4 * len(others)
    assert_reloads_match(manifest, reload_without_blocks(manifest, tmp_path))


@pytest.mark.slow
def test_resnet18_exports_and_reloads_without_blocks(tmp_path):
    model = blocks.build(blocks.load_recipe("resnet18").model, seed=0)
    manifest = export_all(model, tmp_path / "resnet18")
    assert_reloads_match(manifest, reload_without_blocks(manifest, tmp_path))
