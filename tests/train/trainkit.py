"""Small models and data shared by the trainer tests (imported as `trainkit`)."""

from __future__ import annotations

import torch

import blocks


def linear_spec(head: dict | None = None, *, features: int = 4, **extra) -> blocks.ModelSpec:
    return blocks.ModelSpec(input={"shape": [features]}, head=head or {"type": "softmax", "classes": 3},
                            **extra)


def mlp_spec(**extra) -> blocks.ModelSpec:
    """A small MLP with dropout (in-model randomness, for resume tests)."""
    return blocks.ModelSpec(
        input={"shape": [6]},
        backbone=[{"type": "linear", "out_features": 16}, "relu", {"type": "dropout", "p": 0.3}],
        head={"type": "softmax", "classes": 3}, **extra)


def toy_data(n: int = 64, features: int = 4, classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return x, y


def learnable_data(n: int = 96, features: int = 6, classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    teacher = torch.randn(features, classes, generator=g)
    return x, (x @ teacher).argmax(1)
