"""`from_module` of a hand-written module taking several tensors: an input per argument, its
chain of layers the encoder, `torch.cat` the combiner; weights copied, outputs equal."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import blocks
from blocks.exporters.from_module import ModuleImportError


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.extra = nn.Linear(5, 6)
        self.hidden = nn.Linear(10, 8)
        self.out = nn.Linear(8, 3)

    def forward(self, image: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        a = torch.flatten(self.pool(torch.relu(self.conv(image))), 1)
        b = torch.relu(self.extra(extra))
        return self.out(torch.relu(self.hidden(torch.cat([a, b], dim=1))))


def test_two_tensor_module_becomes_a_multi_input_recipe():
    net = TwoInputs()
    imported = blocks.from_module(net, input_shape={"image": [3, 8, 8], "extra": [5]})
    spec = imported.recipe.model
    assert list(spec.inputs) == ["image", "extra"]
    assert spec.inputs["image"].kind == "image" and spec.inputs["extra"].kind == "numeric"
    assert imported.parameters == sum(p.numel() for p in net.parameters())
    assert imported.max_abs_diff <= 1e-5
    x = {"image": torch.randn(2, 3, 8, 8), "extra": torch.randn(2, 5)}
    torch.testing.assert_close(imported.model(x), net.eval()(x["image"], x["extra"]))


def test_inputs_joined_other_than_by_one_cat_are_named():
    class Added(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.out = nn.Linear(2, 4), nn.Linear(3, 4), nn.Linear(4, 2)

        def forward(self, a, b):
            return self.out(self.a(a) + self.b(b))

    with pytest.raises(ModuleImportError, match="expected one torch.cat joining the inputs"):
        blocks.from_module(Added(), input_shape={"a": [2], "b": [3]})
    with pytest.raises(ModuleImportError, match="forward takes a, b; input_shape names a"):
        blocks.from_module(Added(), input_shape={"a": [2]})
