"""`blocks.import_weights`: torchvision's weights give torchvision's logits; a checkpoint that
does not fit is refused by name with the model unchanged; pickles never run."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import blocks
from tests.vision_support import import_torchvision

SLOW = {"resnet50", "efficientnet_b0", "convnext_tiny", "vit_b_16", "densenet121"}


def randomized(model: nn.Module) -> nn.Module:
    """torchvision's model with nothing trivial left: BatchNorm statistics and affines drawn at
    random; zero-initialised tensors (ViT's head and class token) and ConvNeXt's 1e-6 layer
    scales drawn too, so every tensor moves the logits."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=gen) * 0.1)
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=gen) + 0.5)
                module.num_batches_tracked.fill_(7)
        for name, param in model.named_parameters():
            if name.endswith("layer_scale"):
                param.copy_(torch.rand(param.shape, generator=gen) * 0.5 + 0.25)
            elif name.startswith("heads") or name == "class_token" or name.endswith(("bn.weight", "bias")):
                param.add_(torch.randn(param.shape, generator=gen) * 0.05)
    return model.eval()


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in ["mobilenet_v3_small", "resnet18", *sorted(SLOW)]])
def test_torchvision_weights_give_torchvisions_logits(name, tmp_path):
    tv = import_torchvision()
    torch.manual_seed(0)
    reference = randomized(getattr(tv.models, name)())
    path = tmp_path / f"{name}.pth"
    torch.save(reference.state_dict(), path)
    model = blocks.build(name, seed=1)
    report = blocks.import_weights(model, path)
    assert report.complete and report.format == "torchvision"
    assert len(report.loaded) == len(reference.state_dict())
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(x)
        got = model.eval()(x)
    scale = expected.abs().max()
    assert scale > 0.1 and expected.std() > 0.01  # not a degenerate comparison
    assert float((got - expected).abs().max()) <= 1e-4 * float(scale)


@pytest.fixture(scope="module")
def resnet18_weights():
    tv = import_torchvision()
    torch.manual_seed(0)
    return randomized(tv.models.resnet18()).state_dict()


def test_wrong_architecture_is_refused_by_name_and_changes_nothing(tmp_path):
    tv = import_torchvision()
    path = tmp_path / "mnv3.pth"
    torch.save(tv.models.mobilenet_v3_small().state_dict(), path)
    model = blocks.build("resnet18", seed=0)
    before = state(model)
    with pytest.raises(blocks.WeightsError) as info:
        blocks.import_weights(model, path)
    message = str(info.value)
    assert "do not fit model 'resnet18'" in message and "nothing was loaded" in message
    assert "first difference: model 'backbone.0.weight' [64, 3, 7, 7] vs checkpoint " \
           "'features.0.0.weight' [16, 3, 3, 3]" in message
    assert same_state(before, state(model))


def test_missing_and_extra_tensors_are_named(resnet18_weights):
    model = blocks.build("resnet18", seed=0)
    before = state(model)
    missing = dict(resnet18_weights)
    del missing["layer4.1.bn2.running_var"]
    with pytest.raises(blocks.WeightsError, match=r"1 model tensors get nothing \(first: "
                       r"'backbone.15.body.4.running_var' \[512\]\)"):
        blocks.import_weights(model, missing)
    extra = dict(resnet18_weights, **{"aux.weight": torch.zeros(3, 3)})
    with pytest.raises(blocks.WeightsError, match=r"1 checkpoint tensors are left over \(first: "
                       r"'aux.weight' \[3, 3\]\)"):
        blocks.import_weights(model, extra)
    assert same_state(before, state(model))


def test_shape_mismatch_in_a_blocks_checkpoint_names_both_tensors():
    model = blocks.build("seed_cnn", seed=0)
    before = state(model)
    other = dict(blocks.build("seed_cnn", seed=1).state_dict())
    other["head.weight"] = torch.zeros(10, 99)
    with pytest.raises(blocks.WeightsError) as info:
        blocks.import_weights(model, other, format="blocks")
    assert ("first difference: model 'head.weight' [10, 21632] vs checkpoint 'head.weight' [10, 99]"
            in str(info.value))
    assert same_state(before, state(model))


def test_strict_false_loads_what_fits_and_reports_the_rest(resnet18_weights):
    recipe = blocks.load_recipe("resnet18")
    recipe.model.head.classes = 10  # a new task: torchvision's 1000-class fc does not fit
    model = blocks.build(recipe.model, seed=0)
    head_before = model.head.weight.clone()
    report = blocks.import_weights(model, resnet18_weights, strict=False)
    assert report.missing == ["head.weight", "head.bias"]
    assert report.unexpected == ["fc.weight", "fc.bias"]
    assert "2 model tensors not loaded: head.weight, head.bias" in str(report)
    assert torch.equal(model.backbone[0].weight, resnet18_weights["conv1.weight"])
    assert torch.equal(model.backbone[1].running_var, resnet18_weights["bn1.running_var"])
    assert torch.equal(model.head.weight, head_before)
    with pytest.raises(blocks.WeightsError, match="pass strict=False"):
        blocks.import_weights(model, resnet18_weights)


class Payload:
    """Unpickling this calls `open(marker, "w")`: proof that the pickle ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_payload_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"conv.weight": torch.zeros(2), "x": Payload(marker)}, path)
    model = blocks.build("seed_cnn", seed=0)
    before = state(model)
    with pytest.raises(blocks.WeightsError, match="refused without running it"):
        blocks.import_weights(model, path)
    assert not marker.exists()
    assert same_state(before, state(model))


def test_from_safetensors_and_from_a_run_folder_with_only_backbone(tmp_path):
    trained = blocks.build("residual_cnn", seed=3)
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, tmp_path / "w.safetensors")
    copy = blocks.build("residual_cnn", seed=4)
    assert blocks.import_weights(copy, tmp_path / "w.safetensors").format == "blocks"
    assert same_state(state(copy), state(trained))

    blocks.save(trained, tmp_path / "run")
    recipe = blocks.load_recipe("residual_cnn")
    new_task = recipe.model.model_copy(update={"head": None, "heads": {
        "a": blocks.SoftmaxHead(classes=3), "b": blocks.SigmoidHead(classes=2)}})
    model = blocks.build(new_task, seed=5)
    heads_before = {k: v for k, v in state(model).items() if k.startswith("heads.")}
    with pytest.raises(blocks.WeightsError, match="model tensors get nothing"):
        blocks.import_weights(model, tmp_path / "run")
    report = blocks.import_weights(model, tmp_path / "run", only="backbone")
    assert report.format == "blocks" and report.complete
    after = state(model)
    assert all(torch.equal(after[k], v) for k, v in trained.state_dict().items() if k.startswith("backbone."))
    assert all(torch.equal(after[k], v) for k, v in heads_before.items())


@pytest.mark.parametrize(("source", "message"), [
    ("missing.pth", "does not exist"),
    ("folder", "not a blocks run"),
    ("junk.pth", "is not a PyTorch weights file: torch.save writes a zip archive, this file starts with b.not a zi. .text."),
    ("junk.safetensors", "is not a safetensors file"),
    ("list.pth", "holds a list, not a state dict"),
])
def test_unreadable_sources_are_weights_errors(source, message, tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "junk.pth").write_bytes(b"not a zip")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(blocks.WeightsError, match=message):
        blocks.import_weights(blocks.build("seed_cnn"), tmp_path / source)


# --- the recipe key ---------------------------------------------------------------------------------
def test_recipe_weights_key_imports_at_build_relative_to_the_recipe(tmp_path, resnet18_weights):
    torch.save(resnet18_weights, tmp_path / "tv.pth")
    text = blocks.bundled_recipes()["resnet18"].read_text().replace(
        "  head: {type: softmax, classes: 1000}",
        "  head: {type: softmax, classes: 10}\n"
        "  weights: {file: tv.pth, format: torchvision, strict: false}")
    (tmp_path / "r.yaml").write_text(text)
    recipe = blocks.load_recipe(tmp_path / "r.yaml")
    with pytest.warns(UserWarning, match=r"2 model tensors not loaded: head.weight, head.bias"):
        model = blocks.build(recipe, seed=0)
    assert torch.equal(model.backbone[0].weight, resnet18_weights["conv1.weight"])
    blocks.save(model, tmp_path / "run", recipe=recipe)
    (tmp_path / "tv.pth").unlink()  # a saved run does not need the original file again
    again = blocks.load(tmp_path / "run")
    assert torch.equal(again.head.weight, model.head.weight)


def test_recipe_weights_that_do_not_fit_are_located(tmp_path, resnet18_weights):
    torch.save(resnet18_weights, tmp_path / "tv.pth")
    recipe = blocks.load_recipe({"model": {"input": {"shape": [3, 32, 32]}, "backbone": [
        {"type": "conv2d", "out_channels": 4, "kernel_size": 3}, "global_avgpool"],
        "head": {"type": "softmax", "classes": 2},
        "weights": {"file": str(tmp_path / "tv.pth")}}})
    with pytest.raises(blocks.WeightsError, match=r"^model.weights: the weights do not fit"):
        blocks.build(recipe)
    with pytest.raises(blocks.SpecError, match="model.weights.format"):
        blocks.load_recipe({"model": recipe.model.model_dump() | {"weights": {"file": "x", "format": "timm"}}})


def test_only_backbone_from_torchvision_ignores_its_classifier(resnet18_weights):
    recipe = blocks.load_recipe("resnet18")
    recipe.model.head.classes = 10
    model = blocks.build(recipe.model, seed=0)
    head_before = model.head.weight.clone()
    report = blocks.import_weights(model, resnet18_weights, only="backbone")
    assert report.complete and len(report.loaded) == len(resnet18_weights) - 2
    assert torch.equal(model.backbone[15].body[4].running_var, resnet18_weights["layer4.1.bn2.running_var"])
    assert torch.equal(model.head.weight, head_before)


@pytest.mark.slow
def test_timm_convnext_weights_give_timms_logits():
    """timm names everything differently and keeps the layer scale as a `[C]` vector (`gamma`):
    pairing by structure still finds every tensor."""
    from tests.vision_support import import_timm

    timm = import_timm()
    torch.manual_seed(0)
    reference = timm.create_model("convnext_tiny").eval()
    with torch.no_grad():
        for name, param in reference.named_parameters():
            if name.endswith("gamma"):
                param.uniform_(0.2, 0.6)
            elif name.endswith("bias"):
                param.normal_(0, 0.05)
    model = blocks.build("convnext_tiny", seed=0)
    assert blocks.import_weights(model, reference.state_dict()).complete
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(x)
        got = model.eval()(x)
    assert float((got - expected).abs().max()) <= 1e-4 * float(expected.abs().max())
