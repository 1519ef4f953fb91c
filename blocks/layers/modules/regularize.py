"""The modules the `blocks.layers.regularize` block types build."""

from __future__ import annotations

import torch
from torch import nn


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): zero a whole residual branch for a random subset
    of samples (`row`) or the whole batch (`batch`) and rescale the survivors; identity in eval.
    torch has no such module, so this is the paper's math in four lines."""

    def __init__(self, p: float, mode: str = "row") -> None:
        super().__init__()
        self.p = p
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        size = [x.shape[0]] + [1] * (x.ndim - 1) if self.mode == "row" else [1] * x.ndim
        mask = torch.empty(size, dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode!r}"


class LayerScale(nn.Module):
    """A learned per-channel scale (CaiT, ConvNeXt), shaped to broadcast over the other axes."""

    def __init__(self, shape: tuple[int, ...], init_value: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full(shape, float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale
