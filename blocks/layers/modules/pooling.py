"""Pooling modules the catalogue builds that torch.nn has no single class for."""

from __future__ import annotations

from torch import nn


class GlobalAvgPool(nn.Module):
    """Mean over every axis after the channels: `[C, *spatial]` -> `[C]`."""

    def __init__(self, spatial_dims: int) -> None:
        super().__init__()
        self.dims = tuple(range(2, 2 + spatial_dims))

    def forward(self, x):
        return x.mean(dim=self.dims)

    def extra_repr(self) -> str:
        return f"dims={self.dims}"
