"""Export of the modern-classifier block types (`blocks.layers`) and the zoo recipes built from
them: every block family in every format, reloaded where `blocks` cannot be imported; every
bundled recipe as lint-clean plain PyTorch source; library backbones refused by the source
writer with a clear error, and exported to onnx / pt2 instead."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys

import pytest
import torch
from export_support import assert_reloads_match, export_all, reload_without_blocks
from torch import nn

import blocks
import blocks.layers
from blocks.exporters import ExportError
from blocks.exporters.python_source import _EMITTERS, model_source
from blocks.layers.examples import EXAMPLES
from blocks.lint import lint_paths

ZOO = ("convnext_tiny", "densenet121", "efficientnet_b0", "mobilenet_v3_small", "resnet50",
       "vit_b_16")
RUFF_CHECK = ["check", "--isolated", "--select", "E,F,W,I,B,UP,SIM,Q,N"]


def build_example(title: str) -> nn.Module:
    return blocks.build(blocks.load_recipe(EXAMPLES[title][1]).model, seed=0)


def assert_ruff_clean(folder) -> None:
    for args in (RUFF_CHECK, ["format", "--isolated", "--check"]):
        done = subprocess.run([sys.executable, "-m", "ruff", *args, str(folder)],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def _module_classes() -> list[type[nn.Module]]:
    """Every nn.Module class that blocks' own block types build (layers, catalogue, composites,
    preprocessing), the model class itself aside."""
    names = ["blocks.catalogue", "blocks.composites", "blocks.preprocess"]
    names += [f"blocks.layers.{info.name}" for info in pkgutil.iter_modules(blocks.layers.__path__)]
    classes = []
    for name in names:
        module = importlib.import_module(name)
        classes += [cls for _, cls in inspect.getmembers(module, inspect.isclass)
                    if issubclass(cls, nn.Module) and cls.__module__ == name]
    return classes


def test_every_module_type_blocks_builds_has_a_source_emitter():
    classes = _module_classes()
    assert len(classes) >= 15  # the scan found the zoo's modules, not an empty package
    missing = [f"{cls.__module__}.{cls.__qualname__}" for cls in classes if cls not in _EMITTERS]
    assert missing == []


def test_each_block_family_is_written_exactly_and_reloads_without_blocks(tmp_path):
    """The quick check: every example recipe of docs/architectures.md (one per block family)
    as Python source, compared bit for bit with the built model here and after a reload in a
    process where `blocks` cannot be imported."""
    manifest = []
    for index, title in enumerate(EXAMPLES):
        manifest += export_all(build_example(title), tmp_path / f"family{index}",
                               formats=("python",))
    assert len(manifest) == len(EXAMPLES) == 7
    assert_reloads_match(manifest, reload_without_blocks(manifest, tmp_path))
    code = "".join((tmp_path / f"family{i}" / "model.py").read_text() for i in range(7))
    for helper in ("Concat", "DenseConcat", "SqueezeExcite", "DropPath", "LayerScale",
                   "LayerNorm2d", "Permute", "Reshape", "PatchEmbed", "ClassToken",
                   "PositionEmbedding", "TransformerEncoder", "SelectToken", "TokenMean"):
        assert f"\nclass {helper}(nn." in code, helper
    assert "import blocks" not in code and "from blocks" not in code


@pytest.mark.slow
def test_each_block_family_exports_to_every_format_and_reloads_without_blocks(tmp_path):
    manifest = []
    for index, title in enumerate(EXAMPLES):
        manifest += export_all(build_example(title), tmp_path / f"family{index}")
    assert len(manifest) == 4 * len(EXAMPLES)
    assert_reloads_match(manifest, reload_without_blocks(manifest, tmp_path))


def test_zoo_helpers_read_like_hand_written_pytorch():
    code, _ = model_source(build_example("patch_embed, class_token, position_embedding, "
                                         "transformer_encoder, select_token"))
    assert """            PatchEmbed(3, 32, (8, 8)),
            ClassToken(32),
            PositionEmbedding(17, 32),
            nn.Sequential(
                nn.Sequential(TransformerEncoder(32, 4, 64, drop_path=0.1)),
                nn.Sequential(TransformerEncoder(32, 4, 64, drop_path=0.1)),
            ),
            nn.LayerNorm((32,), eps=1e-06),
            SelectToken(0),
""" in code
    # DropPath is defined before the encoder that uses it
    assert code.index("class DropPath(") < code.index("class TransformerEncoder(")
    code, _ = model_source(build_example("squeeze_excite, hardswish, hardsigmoid"))
    assert "SqueezeExcite(72, 24, nn.ReLU(), nn.Hardsigmoid())" in code
    code, _ = model_source(build_example("layernorm2d, permute, layer_scale, drop_path"))
    assert "LayerNorm2d(16, eps=1e-06)" in code and "Permute([0, 2, 3, 1])" in code
    assert "LayerScale((16, 1, 1))," in code and "DropPath(0.1)," in code  # 1e-6: the default
    code, _ = model_source(build_example("concat"))
    assert "Concat(\n" in code and "nn.Unflatten" not in code


def test_a_layer_scale_with_its_own_initial_value_writes_it(tmp_path):
    recipe = """
model:
  input: {shape: [4, 3]}
  backbone: [{type: layer_scale, init_value: 0.1, axis: -1}, flatten]
  head: {type: sigmoid}
"""
    model = blocks.build(blocks.load_recipe(recipe).model, seed=0)
    code, _ = model_source(model)
    assert "LayerScale((3,), 0.1)" in code


def test_a_helper_whose_rebuild_differs_is_refused():
    """The rebuilt-on-meta check reaches inside a helper: a hyper-parameter the helper's
    signature cannot express (here a LayerNorm eps differing between the encoder's two norms)
    is an error naming the path, not a silently different layer."""
    model = build_example("token_mean")
    model.backbone[2].ln_2.eps = 1e-3
    with pytest.raises(ExportError, match=r"^backbone\.2: EncoderLayer cannot be rebuilt as "
                                          r"TransformerEncoder\(32, 4, 64\) \(attributes \['eps'\]"):
        model_source(model)


def _on_meta(name: str) -> nn.Module:
    with torch.device("meta"):  # the source needs the module tree, not weights
        return blocks.build(blocks.load_recipe(name).model, seed=0)


def test_every_bundled_recipe_writes_ruff_and_blocks_lint_clean_source(tmp_path, bundled_names):
    assert set(ZOO) <= set(bundled_names)
    for name in bundled_names:
        code, _ = model_source(_on_meta(name), module_name=name)
        (tmp_path / f"{name}.py").write_text(code)
    result = lint_paths([tmp_path])
    assert not result.findings and not result.errors
    assert_ruff_clean(tmp_path)
    vit = (tmp_path / "vit_b_16.py").read_text()
    assert vit.count("TransformerEncoder(768, 12, 3072)") == 12


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name in ZOO if name != "resnet50"])
def test_zoo_recipe_source_is_bit_exact_on_small_images(tmp_path, name):
    """The full recipe (every layer, full widths) on 32x32 images instead of 224x224: the
    exporter's own check compares the generated class with the model bit for bit. (resnet50
    has only catalogue blocks, which resnet18's export tests cover.)"""
    spec = blocks.load_recipe(name).model.model_dump(mode="json")
    spec["input"]["shape"] = [3, 32, 32]
    result = blocks.export(blocks.build(spec, seed=0), to="python", path=tmp_path / "m.py")
    assert result.tolerance == 0.0 and result.batch_sizes == (2, 3, 1)


@pytest.mark.slow
def test_mobilenet_v3_small_at_full_size_exports_to_python_and_pt2(tmp_path):
    model = blocks.build(blocks.load_recipe("mobilenet_v3_small").model, seed=0)
    assert sum(p.numel() for p in model.parameters()) == 2_542_856
    manifest = export_all(model, tmp_path / "mobilenet", formats=("python", "pt2"))
    assert_reloads_match(manifest, reload_without_blocks(manifest, tmp_path))


# --- library backbones ---------------------------------------------------------------------------
TORCHVISION_RESNET = """
model:
  name: tv-resnet18
  input: {shape: [3, 64, 64]}
  backbone: [{type: torchvision, model: resnet18}]
  head: {type: softmax, classes: 7}
"""


def _torchvision_model() -> nn.Module:
    from vision_support import import_torchvision

    import_torchvision()
    return blocks.build(blocks.load_recipe(TORCHVISION_RESNET).model, seed=0)


def test_python_source_refuses_a_library_backbone_with_a_clear_error(tmp_path):
    model = _torchvision_model()
    with pytest.raises(ExportError) as err:
        blocks.export(model, to="python", path=tmp_path / "m.py")
    assert str(err.value) == (
        "backbone.0: the python source writer cannot inline a library model "
        "(torchvision.models.resnet.ResNet, from torchvision); export it to pt2 or onnx, which "
        "record the computation, or to torchscript")
    assert not (tmp_path / "m.py").exists()


@pytest.mark.slow
def test_torchvision_backbone_exports_to_onnx_pt2_torchscript_and_reloads_without_blocks(
        tmp_path):
    model = _torchvision_model()
    manifest = export_all(model, tmp_path / "tv", formats=("onnx", "pt2", "torchscript"))
    assert_reloads_match(manifest, reload_without_blocks(manifest, tmp_path))
