"""Exports of a multi-input model: ONNX with one named input per model input; the formats
that take one tensor refuse it with the reason instead of writing a wrong file."""

from __future__ import annotations

import pytest

import blocks
from blocks.core.errors import ExportError
from blocks.exporters import FORMATS


@pytest.fixture(scope="module")
def model():
    return blocks.build(blocks.load_recipe("tickets_multi_input").model, seed=0)


@pytest.mark.parametrize("fmt", ["torchscript"])
def test_single_tensor_formats_refuse_a_multi_input_model(model, tmp_path, fmt):
    suffix = FORMATS[fmt]
    with pytest.raises(ExportError, match=f"a multi-input model exports to onnx, pt2 or python for now, not {fmt}"):
        blocks.export(model, to=fmt, path=tmp_path / f"m{suffix}")
    assert list(tmp_path.iterdir()) == []


def test_onnx_has_one_named_input_per_model_input(model, tmp_path):
    pytest.importorskip("onnxruntime")
    result = blocks.export(model, to="onnx", path=tmp_path / "m.onnx")
    assert result.max_abs_diff <= 1e-5
    assert "graph inputs: review, plan, order_value" in result.notes[0]


def test_pt2_program_takes_the_dict_by_input_name(model, tmp_path):
    import torch

    from blocks.exporters.multi_export import sample_inputs

    result = blocks.export(model, to="pt2", path=tmp_path / "m.pt2")
    assert result.max_abs_diff <= 1e-6
    loaded = torch.export.load(str(tmp_path / "m.pt2")).module()
    x = sample_inputs(model, 5, seed=1)
    torch.testing.assert_close(loaded(x), model.eval()(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("combine", ["concat", {"type": "gated", "dim": 8},
                                     {"type": "attention", "dim": 8, "heads": 2}])
def test_python_source_takes_the_dict_and_is_lint_clean(tmp_path, combine):
    import subprocess
    import sys

    spec = blocks.ModelSpec(
        inputs={"words": {"kind": "text", "max_length": 5, "vocab_size": 30,
                          "encoder": [{"type": "embedding", "num_embeddings": 30,
                                       "embedding_dim": 6}, {"type": "text_conv",
                                                             "out_channels": 4}]},
                "size": {"kind": "numeric", "features": 2, "mean": [1.0, 2.0], "std": [3.0, 4.0]}},
        combine=combine, heads={"kind": {"type": "softmax", "classes": 3},
                                "flag": {"type": "sigmoid", "classes": 1}})
    model = blocks.build(spec, seed=0)
    result = blocks.export(model, to="python", path=tmp_path / "multi.py")
    assert result.tolerance == 0.0  # compared bit for bit before it was written
    ruff = subprocess.run([sys.executable, "-m", "ruff", "check", "--select", "E,F,W,I",
                           "--line-length", "100", str(tmp_path / "multi.py")],
                          capture_output=True, text=True)
    assert ruff.returncode == 0, ruff.stdout
