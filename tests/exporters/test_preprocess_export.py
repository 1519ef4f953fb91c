"""Exports of models whose preprocessing imputes, one-hot encodes and normalises channels
(issue 9 parts 4-5): the plain-PyTorch file is bit-exact, every format matches after reload."""

from __future__ import annotations

import pytest
import torch

import blocks
from blocks.exporters.python_source import model_source

TABULAR = {
    "name": "wine-raw", "input": {"shape": [7]},
    "preprocess": {"raw_shape": [4], "features": ["a", "color", "b", "size"], "standardize": True,
                   "impute": "mean", "categories": {"color": ["blue", "red"],
                                                    "size": ["l", "m", "s"]}},
    "backbone": [{"type": "linear", "out_features": 8}, "relu"],
    "head": {"type": "softmax", "classes": 3},
}
IMAGES = {
    "name": "rgb", "input": {"shape": [3, 8, 8]},
    "preprocess": {"raw_shape": [3, 8, 8], "channel_mean": [0.4, 0.5, 0.6],
                   "channel_std": [0.2, 0.25, 0.3]},
    "backbone": [{"type": "conv2d", "out_channels": 4, "kernel_size": 3}, "relu", "flatten"],
    "head": {"type": "softmax", "classes": 2},
}


EMBEDDED = {**TABULAR, "input": {"shape": [6]},
            "preprocess": {**TABULAR["preprocess"], "embeddings": {"size": 2}}}


def embedded_model() -> blocks.BlocksModel:
    model = blocks.build(blocks.ModelSpec.model_validate(EMBEDDED), seed=0).eval()
    model.preprocess.fit(torch.tensor([[1.0, 0, 2, 2], [3, 1, float("nan"), 0]]))
    return model


def test_embedded_category_is_a_learned_vector_and_unknown_codes_are_zero():
    model = embedded_model()
    table = model.preprocess.embeddings["1"].weight  # the second category column: size
    assert table.shape == (4, 2) and table[0].tolist() == [0.0, 0.0]
    out = model.preprocess(rows())
    assert out.shape == (4, 6)
    assert out[:, 4:].tolist() == [table[3].tolist(), table[1].tolist(), table[2].tolist(),
                                   table[1].tolist()]  # NaN size: imputed to its mode, code 0
    bad = torch.tensor([[1.0, 0, 2, 7], [1.0, 0, 2, -1]])
    assert model.preprocess(bad)[:, 4:].abs().sum() == 0
    names = [n for n, _ in model.named_parameters()]
    assert names[0] == "preprocess.embeddings.1.weight"


def tabular_model() -> blocks.BlocksModel:
    model = blocks.build(blocks.ModelSpec.model_validate(TABULAR), seed=0).eval()
    raw = torch.tensor([[1.0, 0, 2, 2], [3, 1, float("nan"), 0], [float("nan"), 1, 5, 1]])
    model.preprocess.fit(raw)
    return model


def rows() -> torch.Tensor:
    """Numbers, category codes (-1: an unseen category), and NaN for missing cells."""
    return torch.tensor([[1.5, 0, 2, 2], [float("nan"), 1, -3, 0], [0.5, -1, float("nan"), 1],
                         [2.0, float("nan"), 1, float("nan")]])


def test_tabular_preprocess_one_hot_after_numeric_columns():
    model = tabular_model()
    pre = model.preprocess
    assert pre.fill.tolist() == [2.0, 1.0, 3.5, 0.0]  # means; category columns: most frequent code
    out = pre(rows())
    assert out.shape == (4, 7)
    # numeric columns a, b standardised; then color (2) and size (3) one-hot; -1 -> all zero
    assert out[:, 2:].tolist() == [[1, 0, 0, 0, 1], [0, 1, 1, 0, 0], [0, 0, 0, 1, 0],
                                   [0, 1, 1, 0, 0]]
    assert not bool(torch.isnan(out).any())


@pytest.mark.parametrize("make", [tabular_model, embedded_model, lambda: blocks.build(
    blocks.ModelSpec.model_validate(IMAGES), seed=0).eval()], ids=["tabular", "embedded", "images"])
def test_python_source_is_bit_exact(make):
    model = make()
    code, name = model_source(model)
    namespace: dict = {}
    exec(compile(code, "generated.py", "exec"), namespace)
    rebuilt = namespace[name]()
    rebuilt.load_state_dict(model.state_dict())
    x = rows() if model.spec.preprocess.categories else torch.rand(3, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), model(x))


@pytest.mark.slow
def test_every_format_reloads_without_blocks(tmp_path):
    from export_support import assert_reloads_match, export_all, reload_without_blocks

    manifest = export_all(tabular_model(), tmp_path / "tabular")
    manifest += export_all(embedded_model(), tmp_path / "embedded")
    manifest += export_all(blocks.build(blocks.ModelSpec.model_validate(IMAGES), seed=0).eval(),
                           tmp_path / "images")
    assert_reloads_match(manifest, reload_without_blocks(manifest, tmp_path))
