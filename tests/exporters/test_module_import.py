"""`blocks.from_module` / `blocks import`: hand-written models become recipes with the same
parameter count and, once the weights are copied, the same outputs; what a recipe cannot express
is an error naming the fx node."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import blocks
from blocks.cli import EXIT_BAD_INPUT, main
from blocks.exporters.from_module import ModuleImportError

SEED_PARAMS = 216_650  # Conv2d(1, 32, 3) + Linear(32 * 26 * 26, 10)


class SeedNet(nn.Module):
    """The seed model as people write it by hand (sizes computed by hand, view to flatten)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 32, 3)
        self.fc = nn.Linear(32 * 26 * 26, 10)

    def forward(self, x):
        x = F.relu(self.conv(x))
        x = x.view(x.size(0), -1)
        return self.fc(x)


class ResidualBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, width)
        self.bn = nn.BatchNorm1d(width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, x):
        return torch.relu(x + self.fc2(F.relu(self.bn(self.fc1(x)))))


class ResidualMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(20, 32)
        self.blocks = nn.Sequential(ResidualBlock(32), ResidualBlock(32))
        self.down = nn.Linear(32, 16)
        self.project = nn.Linear(32, 16)
        self.classifier = nn.Linear(16, 3)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        x = self.down(x) + self.project(x)  # a residual with a projection shortcut
        return self.classifier(x.relu())


def _randomise_batchnorm(module: nn.Module) -> nn.Module:
    """Non-trivial running statistics, so eval-mode batchnorm is really compared."""
    generator = torch.Generator().manual_seed(0)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=generator))
            m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
    return module


@pytest.mark.parametrize("module", [
    nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Flatten(), nn.Linear(32 * 26 * 26, 10)),
    SeedNet(),
], ids=["sequential", "class"])
def test_hand_written_seed_cnn_becomes_the_seed_recipe(module):
    imported = blocks.from_module(module, [1, 28, 28])
    seed = blocks.load_recipe("seed_cnn").model
    assert imported.recipe.model.backbone == seed.backbone
    assert imported.recipe.model.head == seed.head
    assert imported.parameters == SEED_PARAMS
    assert sum(p.numel() for p in blocks.build(seed).parameters()) == SEED_PARAMS
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(imported.model(x), module(x))


def test_residual_mlp_round_trip():
    module = _randomise_batchnorm(ResidualMLP())
    imported = blocks.from_module(module, [20])
    model = imported.recipe.model
    assert [block.type for block in model.backbone] == [
        "linear", "residual", "relu", "residual", "relu", "residual", "relu"]
    assert len(model.backbone[5].shortcut) == 1  # the projection
    assert imported.key_map["backbone.5.shortcut.0"] == "project"
    assert imported.parameters == sum(p.numel() for p in module.parameters()) == 6131
    # the recipe rebuilds the same model from YAML, and the copied weights give equal outputs
    rebuilt = blocks.build(blocks.load_recipe(imported.yaml).model)
    rebuilt.load_state_dict(imported.model.state_dict())
    x = torch.randn(5, 20)
    with torch.no_grad():
        assert torch.allclose(rebuilt.eval()(x), module.eval()(x), atol=1e-6, rtol=0)


class Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        return self.out(self.fc(x) * 2)


class EndsInSoftmax(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return torch.softmax(self.fc(x), dim=-1)


@pytest.mark.parametrize(("module", "message"), [
    (Scaled(), "fx node 'mul' (call_function operator.mul): this operation has no block type; "
               "recipes cannot express it"),
    (EndsInSoftmax(), "fx node 'softmax' (call_function torch.softmax): the model ends with a "
                      "softmax/sigmoid; blocks heads emit logits"),
    (nn.Sequential(nn.Linear(4, 3), nn.Sigmoid()), "fx node '_1' (call_module 1: Sigmoid): the "
                                                   "model ends with a softmax/sigmoid"),
    (nn.Sequential(nn.Linear(4, 3), nn.ReLU()), "fx node '_1' (call_module 1: ReLU): the model "
                                                "must end with the nn.Linear that emits the logits"),
])
def test_what_a_recipe_cannot_express_names_the_node(module, message):
    with pytest.raises(ModuleImportError) as err:
        blocks.from_module(module, [4])
    assert str(err.value).startswith(message)


def test_an_option_the_catalogue_lacks_falls_back_to_the_torch_block():
    module = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AvgPool2d(2, divisor_override=3), nn.PReLU(4),
                           nn.Flatten(), nn.Linear(4 * 3 * 3, 2))
    imported = blocks.from_module(module, [1, 8, 8])
    pool, prelu = imported.recipe.model.backbone[1:3]
    assert (pool.type, pool.layer, pool.kwargs) == (
        "torch", "AvgPool2d", {"kernel_size": 2, "stride": 2, "divisor_override": 3})
    assert (prelu.type, prelu.layer, prelu.kwargs) == ("torch", "PReLU", {"num_parameters": 4})
    assert imported.max_abs_diff == 0.0


def test_wrong_input_shape_is_reported():
    with pytest.raises(ModuleImportError, match=r"SeedNet fails on an input of per-sample shape "
                                                r"\[1, 8, 8\]"):
        blocks.from_module(SeedNet(), [1, 8, 8])


@pytest.mark.slow
def test_torchvision_resnet18_imports_with_equal_count_and_logits():
    from tests.vision_support import import_torchvision

    torchvision = import_torchvision()
    module = _randomise_batchnorm(torchvision.models.resnet18()).eval()
    imported = blocks.from_module(module, [3, 64, 64], head="softmax")
    assert imported.parameters == 11_689_512
    assert imported.max_abs_diff <= 1e-5


def test_cli_import_then_export(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = Path(sys.modules[__name__].__file__).read_text()
    start, end = source.index("class ResidualBlock"), source.index("def _randomise_batchnorm")
    (tmp_path / "nets.py").write_text("import torch\nimport torch.nn.functional as F\n"
                                      "from torch import nn\n\n\n" + source[start:end])
    assert main(["import", "nets.py:ResidualMLP", "--input-shape", "20", "-o", "mlp.yaml",
                 "--save", "run"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("nets.py:ResidualMLP: 6,131 parameters in both; outputs equal after "
                          "copying the weights")
    assert blocks.load_recipe("mlp.yaml").model.name == "ResidualMLP"
    assert main(["export", "run", "--to", "python"]) == 0
    assert (tmp_path / "run" / "model.py").exists()


@pytest.mark.parametrize(("reference", "message"), [
    ("nets.py", "error: 'nets.py': expected FILE.py:NAME"),
    ("missing.py:Net", "error: missing.py: no such file"),
    ("nets.py:Nope", "error: nets.py defines no 'Nope' (nn.Module classes and instances there: "
                     "Net)"),
    ("nets.py:Wide", "error: nets.py:Wide: cannot be called without arguments"),
])
def test_cli_import_reference_errors(tmp_path, monkeypatch, capsys, reference, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nets.py").write_text(textwrap.dedent("""
        from torch import nn

        class Net(nn.Sequential):
            pass

        def Wide(width):
            return nn.Linear(width, 2)
    """))
    assert main(["import", reference, "--input-shape", "4"]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err.startswith(message)
