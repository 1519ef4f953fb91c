"""The module a `residual` block builds."""

from __future__ import annotations

import torch
from torch import nn


class ResidualModule(nn.Module):
    """`body(x) + shortcut(x)`; the shortcut is `nn.Identity` when shapes already match."""

    def __init__(self, body: nn.Module, shortcut: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)
