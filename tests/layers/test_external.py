"""timm and torchvision backbones as blocks: sizes, weights from local files, located errors."""

from __future__ import annotations

import sys

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import blocks
from blocks.layers.external import MissingExtraError, WeightsFileError
from tests.vision_support import import_timm, import_torchvision


def spec(block: dict, classes: int = 7, shape=(3, 64, 64)) -> blocks.ModelSpec:
    return blocks.ModelSpec(input={"shape": list(shape)}, backbone=[block],
                            head={"type": "softmax", "classes": classes})


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_torchvision_resnet18_with_a_7_class_head_has_the_expected_parameter_count():
    import_torchvision()
    model = blocks.build(spec({"type": "torchvision", "model": "resnet18"}, shape=(3, 224, 224)))
    # ResNet-18 has 11,689,512 parameters; its classifier 512 * 1000 + 1000 = 513,000 is removed,
    # the head adds 512 * 7 + 7
    assert sum(p.numel() for p in model.parameters()) == 11_689_512 - 513_000 + 512 * 7 + 7
    assert sum(p.numel() for p in model.parameters()) == 11_180_103
    assert model.shapes.features == (512,)
    assert isinstance(model.backbone[0].fc, nn.Identity)


def test_a_timm_backbone_gives_its_num_features_to_the_head():
    timm = import_timm()
    model = blocks.build(spec({"type": "timm", "model": "resnet10t"}))
    reference = timm.create_model("resnet10t", num_classes=0)
    assert model.shapes.features == (reference.num_features,) == (512,)
    assert model.head.in_features == reference.num_features
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 7)


def test_a_timm_checkpoint_reproduces_the_library_models_features_exactly(tmp_path):
    timm = import_timm()
    torch.manual_seed(3)
    reference = timm.create_model("resnet10t").eval()  # with its classifier, as timm saves it
    path = tmp_path / "resnet10t.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    model = blocks.build(spec({"type": "timm", "model": "resnet10t", "checkpoint": str(path)}),
                         seed=0).eval()
    reference.reset_classifier(0)
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.features(x), reference(x))


def test_a_torchvision_pth_file_reproduces_the_library_models_features_exactly(tmp_path):
    tv = import_torchvision()
    torch.manual_seed(4)
    reference = tv.models.resnet18().eval()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = blocks.build(spec({"type": "torchvision", "model": "resnet18", "weights": str(path)}),
                         seed=0).eval()
    reference.fc = nn.Identity()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.features(x), reference(x))
        assert torch.equal(model(x), model.head(reference(x)))


def test_weights_that_do_not_fit_are_refused_naming_the_keys(tmp_path):
    tv = import_torchvision()
    state = tv.models.resnet18().state_dict()
    del state["layer4.1.bn2.weight"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(WeightsFileError, match=r"missing: layer4\.1\.bn2\.weight; unexpected: extra\.weight"):
        blocks.build(spec({"type": "torchvision", "model": "resnet18", "weights": str(path)}))
    with pytest.raises(WeightsFileError, match="weights file 'nowhere.pth' does not exist"):
        blocks.build(spec({"type": "torchvision", "model": "resnet18", "weights": "nowhere.pth"}))


def test_a_pickled_object_in_a_pth_file_is_not_unpickled(tmp_path):
    import_torchvision()
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "hook": nn.ReLU()}, path)  # a whole module
    with pytest.raises(WeightsFileError, match="cannot read weights file"):
        blocks.build(spec({"type": "torchvision", "model": "resnet18", "weights": str(path)}))


def test_shape_inference_never_reads_weights_or_allocates_them():
    import_timm()
    block = {"type": "timm", "model": "convnext_tiny", "checkpoint": "not/read/at/all.safetensors"}
    shapes = spec(block).infer_shapes()  # meta-device forward: no file read, no real weights
    assert shapes.features == (768,)
    summary = blocks.summarize(spec(block))
    assert summary.total_params == 27_820_128 + 768 * 7 + 7


def test_unknown_model_names_are_located_with_a_suggestion():
    timm, tv = import_timm(), import_torchvision()
    text = ("model:\n  input: {shape: [3, 32, 32]}\n  backbone:\n"
            "    - {type: timm, model: resnt18}\n    - {type: torchvision, model: resnet_18}\n"
            "  head: {type: softmax, classes: 2}\n")
    with pytest.raises(blocks.SpecError) as err:
        blocks.load_recipe(text)
    assert [str(p) for p in err.value.problems] == [
        "<string>:4:27: model.backbone[0].model: unknown timm model 'resnt18'; did you mean "
        f"'resnet18'? ({len(timm.list_models())} valid names)",
        "<string>:5:34: model.backbone[1].model: unknown torchvision classification model "
        f"'resnet_18'; did you mean 'resnet18'? ({len(tv.models.list_models(module=tv.models))} "
        "valid names)",
    ]


def test_an_input_the_model_cannot_take_is_a_located_shape_error():
    import_torchvision()
    with pytest.raises(blocks.SpecError, match=r"model\.backbone\[0\]: torchvision with input "
                       r"shape \[3, 8, 8\]: torchvision model 'vgg11' cannot take input"):
        spec({"type": "torchvision", "model": "vgg11"}, shape=(3, 8, 8)).infer_shapes()
    with pytest.raises(blocks.SpecError, match=r"expects images \[channels, height, width\]"):
        spec({"type": "timm", "model": "resnet10t"}, shape=(12,)).infer_shapes()


def test_pretrained_and_checkpoint_together_are_refused():
    import_timm()
    with pytest.raises(blocks.SpecError, match="not both"):
        blocks.load_recipe({"model": {"input": {"shape": [3, 32, 32]}, "backbone": [
            {"type": "timm", "model": "resnet10t", "pretrained": True, "checkpoint": "x.pth"}],
            "head": {"type": "softmax", "classes": 2}}})


@pytest.mark.parametrize(("library", "extra"), [("timm", "timm"), ("torchvision", "vision")])
def test_a_missing_library_names_the_extra_to_install(monkeypatch, library, extra):
    monkeypatch.setitem(sys.modules, library, None)  # `import timm` now raises ImportError
    with pytest.raises(blocks.SpecError) as err:
        blocks.load_recipe({"model": {"input": {"shape": [3, 32, 32]},
                                      "backbone": [{"type": library, "model": "resnet18"}],
                                      "head": {"type": "softmax", "classes": 2}}})
    assert err.value.first.path == "model.backbone[0].model"
    assert f"pip install 'blocks[{extra}]'" in err.value.first.message
    from blocks.layers.external import import_library

    with pytest.raises(MissingExtraError, match=rf"pip install 'blocks\[{extra}\]'"):
        import_library(library)


def test_external_blocks_round_trip_through_yaml():
    import_timm()
    model_spec = spec({"type": "timm", "model": "resnet10t", "checkpoint": "w.safetensors"})
    text = blocks.dump_recipe(blocks.Recipe(model=model_spec))
    assert "{type: timm, model: resnet10t, checkpoint: w.safetensors}" in text
    assert blocks.load_recipe(text).model == model_spec


def test_kwargs_reach_the_library_constructor():
    import_timm()
    model = blocks.build(spec({"type": "timm", "model": "resnet10t", "kwargs": {"in_chans": 1}},
                              shape=(1, 32, 32)))
    assert model.backbone[0].conv1[0].in_channels == 1
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 7)
    with pytest.raises(blocks.SpecError, match=r"model\.backbone\[0\]\.kwargs: num_classes cannot go in kwargs"):
        blocks.load_recipe({"model": {"input": {"shape": [3, 32, 32]}, "backbone": [
            {"type": "timm", "model": "resnet10t", "kwargs": {"num_classes": 5}}],
            "head": {"type": "softmax", "classes": 2}}})
    with pytest.raises(blocks.SpecError, match=r"model\.backbone\[0\]: torchvision with input shape "
                       r"\[3, 32, 32\]: 'resnet18' does not take these kwargs: .*colour"):
        spec({"type": "torchvision", "model": "resnet18", "kwargs": {"colour": 1}},
             shape=(3, 32, 32)).infer_shapes()


def test_pretrained_downloads_only_when_the_model_is_really_built(monkeypatch):
    timm = import_timm()
    calls = []
    real = timm.create_model

    def create_model(name, **kwargs):
        calls.append((kwargs["pretrained"], torch.get_default_device().type))
        if kwargs["pretrained"]:  # what would reach the network: stand in with random weights
            kwargs["pretrained"] = False
        return real(name, **kwargs)

    monkeypatch.setattr(timm, "create_model", create_model)
    block = {"type": "timm", "model": "resnet10t", "pretrained": True, "kwargs": {"drop_rate": 0.1}}
    recipe = blocks.Recipe(model=spec(block, shape=(3, 40, 40)), train={"freeze": ["backbone"]})
    recipe.model.infer_shapes()
    blocks.summarize(recipe)
    assert all(not pretrained for pretrained, _ in calls)  # validation, shapes, summaries: no hub
    blocks.build(recipe.model)
    assert calls[-1] == (True, "cpu")


def test_skip_weight_files_rebuilds_without_reading_them():
    from blocks.layers.external import skip_weight_files

    import_timm()
    model_spec = spec({"type": "timm", "model": "resnet10t", "checkpoint": "gone.safetensors"})
    with pytest.raises(WeightsFileError, match="'gone.safetensors' does not exist"):
        blocks.build(model_spec)
    with skip_weight_files():
        assert blocks.build(model_spec).shapes.features == (512,)
