"""Mult-adds where torchinfo undercounts: `nn.Linear` on more than one axis (tokens, channels-last
maps) counts every position, and `nn.MultiheadAttention` counts its projections and attention
products (torchinfo counts neither)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import blocks
from blocks.inspect.summary import summarize


def test_transformer_encoder_counts_attention_and_per_token_linears():
    recipe = """
model:
  input: {shape: [5, 8]}
  backbone: [{type: transformer_encoder, heads: 2, mlp_dim: 16}, token_mean]
  head: {type: softmax, classes: 3}
"""
    summary = summarize(blocks.load_recipe(recipe), batch_size=2)
    tokens, dim, mlp = 5, 8, 16
    attention = 4 * tokens * (dim * dim + dim) + 2 * tokens * tokens * dim  # q, k, v, out; QK^T, AV
    feed_forward = tokens * (dim * mlp + mlp) + tokens * (mlp * dim + dim)
    norms = 2 * 2 * dim  # torchinfo's count for a LayerNorm: its parameters, once per sample
    assert summary.rows[0].mult_adds == 2 * (attention + feed_forward + norms)
    assert summary.mult_adds == summary.rows[0].mult_adds + 2 * (8 * 3 + 3)


def test_linear_on_a_channels_last_map_counts_every_position():
    recipe = """
model:
  input: {shape: [4, 6, 6]}
  backbone: [{type: permute, dims: [1, 2, 0]}, {type: linear, out_features: 10}, flatten]
  head: {type: sigmoid}
"""
    summary = summarize(blocks.load_recipe(recipe))
    assert summary.rows[1].mult_adds == 6 * 6 * (4 * 10 + 10)


def test_attention_with_sequence_first_inputs_and_a_separate_key():
    attention = nn.MultiheadAttention(8, 2, kdim=4, vdim=4)  # inputs [L, N, E], not batch first

    class Cross(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attention = attention

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            memory = x[..., :4][:3]  # 3 source positions of 4 features
            return self.attention(x, memory, memory, need_weights=False)[0]

    summary = summarize(Cross(), input_shape=(2, 8), batch_size=5)  # [L=5, N=2, E=8]
    length, source, batch = 5, 3, 2
    expected = batch * (length * (8 + 1) * 8 + 2 * source * (4 + 1) * 8 + length * (8 * 8 + 8)
                        + 2 * length * source * 8)
    assert summary.mult_adds == expected


@pytest.mark.parametrize(("name", "mult_adds", "published"), [
    ("vit_b_16", 17_580_358_120, 17.56e9),  # torchvision's ViT_B_16 weights: 17.56 GFLOPS
    ("convnext_tiny", 4_468_983_208, 4.46e9),  # torchvision's ConvNeXt_Tiny weights: 4.46
])
def test_zoo_transformer_and_convnext_counts_match_the_published_figures(name, mult_adds,
                                                                         published):
    summary = summarize(blocks.load_recipe(name))
    assert summary.mult_adds == mult_adds
    assert abs(summary.mult_adds / published - 1) < 0.005
