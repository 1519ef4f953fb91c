"""The modules the `blocks.layers.transformer` block types build."""

from __future__ import annotations

import torch
from torch import nn

from blocks.layers.modules.regularize import DropPath


class PatchEmbed(nn.Module):
    """Conv with kernel = stride = patch, then `[N, D, h, w]` -> tokens `[N, h*w, D]`."""

    def __init__(self, channels: int, dim: int, patch: tuple[int, int], bias: bool) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, dim, patch, stride=patch, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class ClassToken(nn.Module):
    """A learned token put in front of the sequence: `[N, L, D]` -> `[N, L + 1, D]`."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.token = nn.Parameter(torch.zeros(1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.token.expand(x.shape[0], -1, -1), x], dim=1)


class PositionEmbedding(nn.Module):
    """A learned embedding per position, added to the tokens."""

    def __init__(self, length: int, dim: int, std: float) -> None:
        super().__init__()
        self.embedding = nn.Parameter(torch.empty(1, length, dim).normal_(std=std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.embedding


class EncoderLayer(nn.Module):
    """Pre-norm transformer encoder layer: `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))`.

    Built from `nn.MultiheadAttention`, `nn.LayerNorm`, `nn.Linear`; submodule order is
    torchvision's ViT `EncoderBlock` (ln_1, self_attention, ln_2, mlp)."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float, attention_dropout: float,
                 drop_path: float, eps: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=eps)
        self.self_attention = nn.MultiheadAttention(dim, heads, dropout=attention_dropout,
                                                    batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(mlp_dim, dim), nn.Dropout(dropout))
        self.drop_path = DropPath(drop_path)
        for module in self.mlp:
            if isinstance(module, nn.Linear):  # ViT's MLP initialisation
                nn.init.xavier_uniform_(module.weight)
                nn.init.normal_(module.bias, std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        y, _ = self.self_attention(y, y, y, need_weights=False)
        x = x + self.drop_path(self.dropout(y))
        return x + self.drop_path(self.mlp(self.ln_2(x)))


class SelectToken(nn.Module):
    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.index]

    def extra_repr(self) -> str:
        return f"index={self.index}"


class TokenMean(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)
