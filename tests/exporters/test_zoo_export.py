"""Export of the modern-classifier block types (`blocks.layers`) and the zoo recipes built from
them: every block family in every format, reloaded where `blocks` cannot be imported; every
bundled recipe as lint-clean plain PyTorch source; library backbones refused by the source
writer with a clear error, and exported to onnx / pt2 instead."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from export_support import assert_reloads_match, export_all, reload_without_blocks
from torch import nn

import blocks
import blocks.layers
from blocks.exporters import ExportError
from blocks.exporters.python_source import model_source
from blocks.exporters.source_writer import has_emitter
from blocks.layers.base import module_classes
from blocks.lint import lint_paths

ZOO = ("convnext_tiny", "densenet121", "efficientnet_b0", "mobilenet_v3_small", "resnet50",
       "vit_b_16")
RUFF_CHECK = ["check", "--isolated", "--select", "E,F,W,I,B,UP,SIM,Q,N"]


#: one small recipe per block family (a few hundred to a few thousand parameters), with the
#: options each emitter writes differently
FAMILIES = {
    "branches": """
model:
  input: {shape: [3, 8, 8]}
  backbone:
    - type: concat
      branches:
        - [{type: conv2d, out_channels: 4, kernel_size: 1}, relu]
        - [{type: conv2d, out_channels: 2, kernel_size: 3, padding: 1}]
    - type: repeat
      times: 2
      blocks:
        - type: dense_concat
          blocks: [batchnorm2d, relu, {type: conv2d, out_channels: 3, kernel_size: 3, padding: 1}]
    - global_avgpool
    - type: concat
      dim: -1
      branches: [[{type: linear, out_features: 3}], [tanh]]
  head: {type: softmax, classes: 4}
""",
    "gating": """
model:
  input: {shape: [3, 8, 8]}
  backbone:
    - {type: conv2d, out_channels: 16, kernel_size: 3, padding: 1}
    - hardswish
    - {type: squeeze_excite, ratio: 4, divisor: 8, gate: hardsigmoid}
    - {type: squeeze_excite, squeeze_channels: 3, activation: silu}
    - hardsigmoid
    - global_avgpool
  head: {type: softmax, classes: 3}
""",
    "convnext_block": """
model:
  input: {shape: [3, 16, 16]}
  backbone:
    - {type: conv2d, out_channels: 8, kernel_size: 4, stride: 4}
    - {type: layernorm2d, eps: 1.0e-6}
    - type: residual
      blocks:
        - {type: conv2d, out_channels: 8, kernel_size: 3, padding: 1, groups: 8}
        - {type: permute, dims: [1, 2, 0]}
        - {type: layernorm, eps: 1.0e-6}
        - {type: linear, out_features: 16}
        - gelu
        - {type: linear, out_features: 8}
        - {type: permute, dims: [2, 0, 1]}
        - {type: layer_scale, init_value: 0.5}
        - {type: drop_path, p: 0.2, mode: batch}
    - {type: layernorm2d, bias: false}
    - {type: layernorm2d, elementwise_affine: false}
    - global_avgpool
  head: {type: softmax, classes: 3}
""",
    "axes": """
model:
  input: {shape: [24]}
  backbone:
    - {type: reshape, shape: [2, -1]}
    - {type: unflatten, dim: 1, sizes: [3, 4]}
    - {type: softmax_act, dim: 0}
    - {type: permute, dims: [2, 0, 1]}
    - flatten
  head: {type: sigmoid, classes: 2}
""",
    "vit": """
model:
  input: {shape: [3, 16, 8]}
  backbone:
    - {type: patch_embed, dim: 16, patch_size: [4, 2], bias: false}
    - class_token
    - {type: position_embedding, std: 0.5}
    - {type: transformer_encoder, heads: 2, mlp_ratio: 2.0, drop_path: 0.1, dropout: 0.1}
    - {type: transformer_encoder, heads: 4, mlp_dim: 8, attention_dropout: 0.2, eps: 1.0e-5}
    - {type: layer_scale, axis: -1}
    - {type: layernorm, eps: 1.0e-6}
    - {type: select_token, index: -1}
  head: {type: softmax, classes: 3}
""",
    "token_mean": """
model:
  input: {shape: [3, 8, 8]}
  backbone:
    - {type: patch_embed, dim: 8, patch_size: 4}
    - position_embedding
    - {type: transformer_encoder, heads: 2, mlp_dim: 16}
    - token_mean
  head: {type: softmax, classes: 3}
""",
}


def build_family(name: str) -> nn.Module:
    return blocks.build(blocks.load_recipe(FAMILIES[name]).model, seed=0)


def assert_ruff_clean(folder) -> None:
    for args in (RUFF_CHECK, ["format", "--isolated", "--check"]):
        done = subprocess.run([sys.executable, "-m", "ruff", *args, str(folder)],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def _module_classes() -> list[type[nn.Module]]:
    """Every nn.Module class that blocks' own block types build (each defined in its family
    file, `blocks/layers/*.py`, on first use), the model class aside."""
    return [cls for cls in module_classes() if issubclass(cls, nn.Module)]


def test_every_module_type_blocks_builds_has_a_source_emitter():
    classes = _module_classes()
    assert len(classes) >= 15  # the scan found the zoo's modules, not an empty package
    missing = [f"{cls.__module__}.{cls.__qualname__}" for cls in classes if not has_emitter(cls)]
    assert missing == []


def test_each_block_family_is_written_exactly_and_reloads_without_blocks(tmp_path):
    """The quick check: every family as Python source, compared bit for bit with the built
    model here and after a reload in a process where `blocks` cannot be imported."""
    manifest = []
    for name in FAMILIES:
        manifest += export_all(build_family(name), tmp_path / name, formats=("python",))
    assert len(manifest) == len(FAMILIES)
    assert_reloads_match(manifest, reload_without_blocks(manifest, tmp_path))
    files = [tmp_path / name / "model.py" for name in FAMILIES]
    result = lint_paths(files)
    assert not result.findings and not result.errors
    assert_ruff_clean(tmp_path)  # the only .py files there are the exported ones
    code = "".join(file.read_text() for file in files)
    for helper in ("Concat", "DenseConcat", "SqueezeExcite", "DropPath", "LayerScale",
                   "LayerNorm2d", "Permute", "Reshape", "PatchEmbed", "ClassToken",
                   "PositionEmbedding", "TransformerEncoder", "SelectToken", "TokenMean"):
        assert f"\nclass {helper}(nn." in code, helper
    assert "import blocks" not in code and "from blocks" not in code


@pytest.mark.slow
def test_each_block_family_exports_to_every_format_and_reloads_without_blocks(tmp_path):
    manifest = []
    for name in FAMILIES:
        manifest += export_all(build_family(name), tmp_path / name)
    assert len(manifest) == 4 * len(FAMILIES)
    assert_reloads_match(manifest, reload_without_blocks(manifest, tmp_path))


def test_zoo_helpers_read_like_hand_written_pytorch():
    code, _ = model_source(build_family("vit"))
    assert """            PatchEmbed(3, 16, (4, 2), bias=False),
            ClassToken(16),
            PositionEmbedding(17, 16),
            TransformerEncoder(16, 2, 32, dropout=0.1, drop_path=0.1),
            TransformerEncoder(16, 4, 8, attention_dropout=0.2, eps=1e-05),
            LayerScale((16,)),
            nn.LayerNorm((16,), eps=1e-06),
            SelectToken(-1),
""" in code
    # DropPath is defined before the encoder that uses it
    assert code.index("class DropPath(") < code.index("class TransformerEncoder(")
    code, _ = model_source(build_family("gating"))
    assert "SqueezeExcite(16, 8, nn.ReLU(), nn.Hardsigmoid())," in code
    assert "SqueezeExcite(16, 3, nn.SiLU(), nn.Sigmoid())," in code
    code, _ = model_source(build_family("convnext_block"))
    for text in ("LayerNorm2d(8, eps=1e-06)", "Permute([0, 2, 3, 1])", "LayerScale((8, 1, 1), 0.5)",
                 'DropPath(0.2, "batch")', "LayerNorm2d(8, bias=False)",
                 "LayerNorm2d(8, elementwise_affine=False)"):
        assert f"{text},\n" in code, text
    code, _ = model_source(build_family("branches"))
    assert "Concat([nn.Sequential(nn.Linear(12, 3)), nn.Sequential(nn.Tanh())], 1)," in code
    assert code.count("DenseConcat(\n") == 2
    code, _ = model_source(build_family("axes"))
    assert "Reshape((2, 12)),\n            nn.Unflatten(2, [3, 4]),\n" in code


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
    model = build_family("token_mean")
    model.backbone[2].ln_2.eps = 1e-3
    with pytest.raises(ExportError, match=r"^backbone\.2: EncoderLayer cannot be rebuilt as "
                                          r"TransformerEncoder\(8, 2, 16\) \(attributes \['eps'\]"):
        model_source(model)


def _on_meta(name: str) -> nn.Module:
    with torch.device("meta"):  # the source needs the module tree, not weights
        return blocks.build(blocks.load_recipe(name).model, seed=0)


def test_every_bundled_recipe_writes_ruff_and_blocks_lint_clean_source(tmp_path, bundled_names):
    assert set(ZOO) <= set(bundled_names)
    for name in bundled_names:
        if blocks.load_recipe(name).model.inputs is not None:
            continue  # several inputs: blocks.exporters.multi_source (test_multi_input_export.py)
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
    from tests.vision_support import import_torchvision

    import_torchvision()
    return blocks.build(blocks.load_recipe(TORCHVISION_RESNET).model, seed=0)


def _timm_model() -> nn.Module:
    from tests.vision_support import import_timm

    import_timm()
    return blocks.build(blocks.load_recipe(TORCHVISION_RESNET.replace(
        "{type: torchvision, model: resnet18}", "{type: timm, model: resnet10t}")).model, seed=0)


@pytest.mark.parametrize(("make", "library", "model_class"), [
    (_torchvision_model, "torchvision", "torchvision.models.resnet.ResNet"),
    (_timm_model, "timm", "timm.models.resnet.ResNet"),
], ids=["torchvision", "timm"])
def test_python_source_refuses_a_library_backbone_with_a_clear_error(tmp_path, make, library,
                                                                     model_class):
    with pytest.raises(ExportError) as err:
        blocks.export(make(), to="python", path=tmp_path / "m.py")
    assert str(err.value) == (
        f"backbone.0: the python source writer cannot inline a library model ({model_class}, "
        f"from {library}); export it to pt2 or onnx, which record the computation, or to "
        "torchscript")
    assert not (tmp_path / "m.py").exists()


@pytest.mark.slow
def test_torchvision_backbone_exports_to_onnx_pt2_torchscript_and_reloads_without_blocks(
        tmp_path):
    model = _torchvision_model()
    manifest = export_all(model, tmp_path / "tv", formats=("onnx", "pt2", "torchscript"))
    assert_reloads_match(manifest, reload_without_blocks(manifest, tmp_path))
