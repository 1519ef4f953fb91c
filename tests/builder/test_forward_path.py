"""The built model's forward calls the backbone's layers directly (as a flat nn.Sequential
would) unless something hooks the backbone: hooks still fire, outputs are the same."""

from __future__ import annotations

import torch
from torch import nn

import blocks


def mlp() -> blocks.BlocksModel:
    return blocks.build(blocks.ModelSpec(
        input={"shape": [6]}, backbone=[{"type": "linear", "out_features": 8}, "relu"],
        head={"type": "softmax", "classes": 3}), seed=0)


def test_forward_equals_the_same_layers_in_a_flat_sequential():
    model = mlp()
    flat = nn.Sequential(*model.backbone, model.head)
    x = torch.randn(5, 6)
    assert torch.equal(model(x), flat(x))


def test_hooks_on_the_backbone_and_global_hooks_still_fire():
    model = mlp()
    x = torch.randn(5, 6)
    seen = []
    handle = model.backbone.register_forward_hook(lambda m, i, o: seen.append(("own", o.shape)))
    plain = model(x)
    handle.remove()
    glob = nn.modules.module.register_module_forward_hook(
        lambda m, i, o: seen.append(("global", type(m).__name__)))
    try:
        assert torch.equal(model(x), plain)
    finally:
        glob.remove()
    assert seen == [("own", torch.Size([5, 8])), ("global", "Linear"), ("global", "ReLU"),
                    ("global", "Sequential"), ("global", "Linear"), ("global", "BlocksModel")]
    model(x)
    assert len(seen) == 6  # removed hooks stay removed


def test_a_replaced_backbone_is_called_as_a_module():
    model = mlp()
    calls = []

    class Wrapped(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            calls.append(x.shape)
            return self.inner(x)

    model.backbone = Wrapped(model.backbone)
    model(torch.randn(2, 6))
    assert calls == [torch.Size([2, 6])]
