"""The modules the `blocks.layers.axes` block types build."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Permute(nn.Module):
    """`x.permute(0, *dims)`: reorders the per-sample axes, batch first and untouched."""

    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        self.dims = [0, *(d + 1 for d in dims)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(self.dims)

    def extra_repr(self) -> str:
        return f"dims={self.dims[1:]}"


class Reshape(nn.Module):
    """`x.reshape(batch, *shape)`."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={list(self.shape)}"


class LayerNorm2d(nn.LayerNorm):
    """`nn.LayerNorm` over the channels of `[N, C, *spatial]` at every position (ConvNeXt's)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.movedim(1, -1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.movedim(-1, 1)
