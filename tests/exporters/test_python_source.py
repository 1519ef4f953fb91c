"""The plain-PyTorch source writer: readable, ruff and `blocks lint` clean, exact for every
catalogue block, and loud (naming the module path and type) for what it cannot write."""

from __future__ import annotations

import subprocess
import sys
from collections import OrderedDict

import pytest
import torch
from torch import nn

import blocks
from blocks.exporters import ExportError
from blocks.exporters.python_source import model_source
from blocks.exporters.source_writer import _EMITTERS, register_emitter
from blocks.lint import lint_paths

EVERY_BLOCK = """
model:
  name: every-block
  input: {shape: [2, 12, 12]}
  backbone:
    - {type: conv2d, out_channels: 4, kernel_size: 3, padding: same, padding_mode: reflect}
    - {type: batchnorm2d, momentum: null}
    - {type: gelu, approximate: tanh}
    - {type: maxpool2d, kernel_size: 2, ceil_mode: true}
    - {type: avgpool2d, kernel_size: 3, stride: 1, padding: 1, count_include_pad: false}
    - {type: adaptive_avgpool2d, output_size: [4, 4]}
    - {type: torch, layer: ELU, kwargs: {alpha: 0.5}}
    - type: repeat
      times: 2
      blocks:
        - type: residual
          blocks:
            - {type: conv2d, out_channels: 6, kernel_size: [3, 1], padding: [1, 0], groups: 2}
            - silu
        - leaky_relu
    - {type: flatten, start_dim: 1}
    - {type: conv1d, out_channels: 3, kernel_size: 2, dilation: 2}
    - {type: maxpool1d, kernel_size: 2}
    - {type: avgpool1d, kernel_size: 1}
    - sigmoid_act
    - global_avgpool
    - {type: layernorm, eps: 0.001}
    - {type: linear, out_features: 8, bias: false}
    - batchnorm1d
    - tanh
    - {type: dropout, p: 0.2}
    - identity
    - type: residual
      blocks: [{type: linear, out_features: 5}, relu]
  head: {type: softmax, classes: 3, hidden: [7], dropout: 0.1}
"""


def export_python(model, path, **kwargs):
    return blocks.export(model, to="python", path=path, **kwargs)


def test_every_catalogue_block_is_written_exactly(tmp_path):
    model = blocks.build(blocks.load_recipe(EVERY_BLOCK).model, seed=0)
    result = export_python(model, tmp_path / "every.py")
    assert result.max_abs_diff == 0.0 and result.tolerance == 0.0
    code = (tmp_path / "every.py").read_text()
    assert "nn.Conv2d(2, 4, (3, 3), padding=\"same\", padding_mode=\"reflect\")" in code
    assert "nn.ELU(alpha=0.5)" in code and "nn.BatchNorm2d(4, momentum=None)" in code
    assert "Residual(" in code and "GlobalAvgPool(1)" in code
    assert "import blocks" not in code and "from blocks" not in code


def test_embedding_model_with_integer_input(tmp_path):
    recipe = """
model:
  input: {shape: [6], dtype: int64}
  backbone:
    - {type: embedding, num_embeddings: 11, embedding_dim: 4, padding_idx: 0}
    - flatten
  head: {type: sigmoid, classes: 2}
"""
    model = blocks.build(blocks.load_recipe(recipe).model, seed=0)
    export_python(model, tmp_path / "tokens.py", probabilities=True)
    assert "nn.Embedding(11, 4, padding_idx=0)" in (tmp_path / "tokens.py").read_text()


def test_float64_model_keeps_its_dtype(tmp_path):
    recipe = """
model:
  input: {shape: [3], dtype: float64}
  backbone: [{type: linear, out_features: 4}]
  head: {type: softmax, classes: 2}
"""
    model = blocks.build(blocks.load_recipe(recipe).model, seed=0)
    export_python(model, tmp_path / "double.py")  # compared bit for bit in float64
    assert "self.to(torch.float64)" in (tmp_path / "double.py").read_text()


def test_generated_file_is_ruff_and_blocks_lint_clean(tmp_path):
    for name in ("residual_cnn", "multitask"):
        model = blocks.build(blocks.load_recipe(name).model, seed=0)
        export_python(model, tmp_path / f"{name}.py", probabilities=name == "multitask")
    # a Sequential with named children needs OrderedDict (a stdlib import, sorted first)
    model = blocks.build(blocks.load_recipe("seed_cnn").model, seed=0)
    model.backbone = nn.Sequential(OrderedDict(zip(("conv", "act", "flat"), model.backbone,
                                                   strict=True)))
    export_python(model, tmp_path / "named.py")
    # and a ModuleDict too long for one line
    spec = blocks.load_recipe("multitask").model.model_dump(mode="json")
    spec["heads"] = {f"head_number_{i}": {"type": "softmax", "classes": 3} for i in range(4)}
    model = blocks.build(spec, seed=0)
    export_python(model, tmp_path / "many_heads.py")
    assert '("conv", nn.Conv2d(1, 32, (3, 3)))' in (tmp_path / "named.py").read_text()
    result = lint_paths([tmp_path])
    assert not result.findings and not result.errors
    ruff = [sys.executable, "-m", "ruff"]
    for args in (["check", "--isolated", "--select", "E,F,W,I,B,UP,SIM,Q,N"],
                 ["format", "--isolated", "--check"]):
        done = subprocess.run([*ruff, *args, str(tmp_path)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def test_source_reads_like_hand_written_pytorch():
    model = blocks.build(blocks.load_recipe("multitask").model, seed=0)
    code, name = model_source(model, probabilities=True, module_name="multitask")
    assert name == "MultitaskMlp"
    assert code.endswith("""
    model = MultitaskMlp()
    model.load_state_dict(load_file(weights))
    return model.to(device).eval()
""")
    assert """        features = self.backbone(x)
        return {
            "kind": self.heads["kind"](features).softmax(dim=-1),
            "tags": self.heads["tags"](features).sigmoid(),
        }
""" in code
    assert 'self.heads = nn.ModuleDict({"kind": nn.Linear(64, 4), "tags": nn.Linear(64, 3)})' in code
    assert "from multitask import load" in code


def test_class_name_never_shadows_a_helper(tmp_path):
    recipe = """
model:
  name: residual
  input: {shape: [4]}
  backbone: [{type: residual, blocks: [{type: linear, out_features: 4}]}]
  head: {type: sigmoid}
"""
    model = blocks.build(blocks.load_recipe(recipe).model, seed=0)
    code, name = model_source(model)
    assert name == "ResidualModel" and "class Residual(nn.Module):" in code


class Gate(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


def test_unknown_module_type_names_its_path_and_type(tmp_path):
    model = blocks.build(blocks.load_recipe("residual_cnn").model, seed=0)
    model.backbone[3].body[1] = Gate()
    with pytest.raises(ExportError) as err:
        export_python(model, tmp_path / "m.py")
    assert str(err.value).startswith(
        f"backbone.3.body.1: cannot write {__name__}.Gate as plain PyTorch; no source emitter "
        "knows this module type")
    assert not (tmp_path / "m.py").exists()


def test_torch_layer_that_cannot_be_rebuilt_is_refused(tmp_path):
    model = blocks.build(blocks.load_recipe("tabular_mlp").model, seed=0)
    model.backbone[0] = nn.MultiheadAttention(8, 2, bias=False)  # `bias` is not kept on the layer
    with pytest.raises(ExportError, match=r"^backbone\.0: nn\.MultiheadAttention cannot be rebuilt"):
        model_source(model)


def test_a_child_the_forward_does_not_know_is_an_error():
    model = blocks.build(blocks.load_recipe("seed_cnn").model, seed=0)
    model.extra = nn.ReLU()
    with pytest.raises(ExportError, match="the model has a child 'extra' \\(ReLU\\) that the "
                                          "exported forward does not know where to apply"):
        model_source(model)


class Standardize(nn.Module):
    """Stands in for a preprocessing module: buffers only, applied before the backbone."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("std", torch.ones(features))

    def forward(self, x):
        return (x - self.mean) / self.std


STANDARDIZE = '''
class Standardize(nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("std", torch.ones(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std
'''


@pytest.fixture
def standardize_emitter():
    @register_emitter(Standardize)
    def _standardize(module, writer, path):
        return f"{writer.helper('Standardize', STANDARDIZE)}({module.mean.numel()})"

    yield
    _EMITTERS.pop(Standardize)


@pytest.mark.usefixtures("standardize_emitter")
def test_a_preprocess_child_runs_first_with_one_emitter_added():

    model = blocks.build(blocks.load_recipe("tabular_mlp").model, seed=0).eval()
    model.preprocess = Standardize(30)
    model.preprocess.mean.uniform_()
    model.preprocess.std.uniform_(1, 2)
    code, name = model_source(model)
    assert "        x = self.preprocess(x)\n        features = self.backbone(x)\n" in code
    namespace: dict = {}
    exec(compile(code, "generated.py", "exec"), namespace)
    rebuilt = namespace[name]()
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(4, 30)
    with torch.no_grad():
        want = model.head(model.backbone(model.preprocess(x)))
        assert torch.equal(rebuilt.eval()(x), want)


def test_generated_forward_checks_the_input_shape(tmp_path):
    model = blocks.build(blocks.load_recipe("seed_cnn").model, seed=0)
    code, name = model_source(model)
    namespace: dict = {}
    exec(compile(code, "generated.py", "exec"), namespace)
    with pytest.raises(ValueError, match=r"expected input \[batch, 1, 28, 28\], got \[2, 28, 28\]"):
        namespace[name]()(torch.zeros(2, 28, 28))
