"""The zoo recipes are torchvision 0.28's models: exact parameter and floating-point buffer
counts (built on the meta device: no memory, no time)."""

from __future__ import annotations

import pytest
import torch

import blocks
from tests.vision_support import import_torchvision

ZOO = {  # torchvision 0.28, 1000 classes: (parameters, floating-point buffer elements)
    "resnet18": (11_689_512, 9_600),
    "resnet50": (25_557_032, 53_120),
    "mobilenet_v3_small": (2_542_856, 12_112),
    "efficientnet_b0": (5_288_548, 42_016),
    "convnext_tiny": (28_589_128, 0),
    "vit_b_16": (86_567_656, 0),
    "densenet121": (7_978_856, 83_648),
}


def counts(model: torch.nn.Module) -> tuple[int, int]:
    return (sum(p.numel() for p in model.parameters()),
            sum(b.numel() for b in model.buffers() if b.dtype.is_floating_point))


def meta_model(name: str) -> blocks.BlocksModel:
    with torch.device("meta"):
        return blocks.BlocksModel(blocks.load_recipe(name).model)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_recipe_counts_equal_torchvision(name):
    assert counts(meta_model(name)) == ZOO[name]
    tv = import_torchvision()
    with torch.device("meta"):
        reference = getattr(tv.models, name)()
    assert counts(reference) == ZOO[name]
    # same tensors, shape for shape, in the same multiset
    ours = sorted(tuple(t.shape) for t in meta_model(name).state_dict().values())
    theirs = sorted(tuple(t.shape) for t in reference.state_dict().values())
    assert ours == theirs


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_recipe_summary_from_the_cli(name, capsys):
    from blocks.cli import main

    assert main(["summary", name, "--format", "json"]) == 0
    out = capsys.readouterr().out
    assert f"{ZOO[name][0]}" in out.replace(",", "")
