"""The modules the `blocks.layers.branches` block types build."""

from __future__ import annotations

import torch
from torch import nn


class ConcatModule(nn.Module):
    """`torch.cat([branch(x) for branch in branches], dim)`."""

    def __init__(self, branches: list[nn.Module], dim: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=self.dim)


class DenseConcatModule(nn.Module):
    """`torch.cat([x, body(x)], 1)`: DenseNet's layer, its input passed on beside its output."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], dim=1)
