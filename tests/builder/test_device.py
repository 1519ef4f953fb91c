"""Input checks before any op runs: device, per-sample shape, dtype; and predictions."""

from __future__ import annotations

import pytest
import torch

import blocks
from blocks.builder.device import mismatch_message, parse_device_name, resolve_device


@pytest.fixture
def seed_model():
    return blocks.build(blocks.load_recipe("seed_cnn").model, seed=0)


def test_device_mismatch_raises_with_exact_message(seed_model):
    x = torch.zeros(2, 1, 28, 28, device="meta")
    with pytest.raises(blocks.DeviceMismatchError) as info:
        seed_model(x)
    assert str(info.value) == (
        "input is on device meta but model 'seed-cnn' is on cpu; move it first "
        "(input.to('cpu')) or build the model with on_device_mismatch='move'")
    assert isinstance(info.value, RuntimeError)
    assert str(info.value) == mismatch_message("input", torch.device("meta"), "seed-cnn", torch.device("cpu"))


def test_device_mismatch_move_policy():
    model = blocks.build("seed_cnn", seed=0, on_device_mismatch="move")
    x = torch.randn(2, 1, 28, 28)
    # the move policy also casts a float input of the wrong precision
    torch.testing.assert_close(model(x.double()), model(x))
    # a meta tensor holds no data to copy to the cpu: the move is attempted and torch refuses
    with pytest.raises(NotImplementedError):
        model(torch.zeros(2, 1, 28, 28, device="meta"))
    # the other way round works: a model on meta, a cpu input moved to it
    model.to("meta")
    out = model(x)
    assert out.device.type == "meta" and out.shape == (2, 10)


def test_model_device_property_and_to(seed_model):
    assert seed_model.device == torch.device("cpu")
    seed_model.to("meta")
    assert seed_model.device == torch.device("meta")
    out = seed_model(torch.zeros(3, 1, 28, 28, device="meta"))
    assert out.shape == (3, 10) and out.device.type == "meta"
    with pytest.raises(blocks.DeviceMismatchError, match="on device cpu but model 'seed-cnn' is on meta"):
        seed_model(torch.zeros(3, 1, 28, 28))


def test_mixed_device_model_is_reported():
    model = blocks.build("seed_cnn")
    model.head.to("meta")
    with pytest.raises(blocks.DeviceMismatchError, match=r"on 2 devices \(cpu: backbone.0.weight"):
        model.check_device()


def test_bad_policy_rejected():
    with pytest.raises(ValueError, match="on_device_mismatch"):
        blocks.build("seed_cnn", on_device_mismatch="ignore")


def test_wrong_per_sample_shape(seed_model):
    with pytest.raises(blocks.InputShapeError) as info:
        seed_model(torch.zeros(4, 28, 28))
    assert str(info.value) == ("model 'seed-cnn' expects input of shape [batch, 1, 28, 28] but got "
                               "[4, 28, 28] (per-sample [28, 28])")
    with pytest.raises(blocks.InputShapeError, match=r"per-sample \[3, 28, 28\]"):
        seed_model(torch.zeros(4, 3, 28, 28))
    with pytest.raises(blocks.InputShapeError, match="takes a tensor, got list"):
        seed_model([[0.0]])


def test_wrong_dtype_raises_then_double_follows(seed_model):
    x = torch.randn(2, 1, 28, 28, dtype=torch.float64)
    with pytest.raises(blocks.InputShapeError, match=r"expects torch.float32 input but got torch.float64"):
        seed_model(x)
    seed_model.double()
    assert seed_model(x).dtype == torch.float64
    with pytest.raises(blocks.InputShapeError, match="expects torch.float64 input but got torch.float32"):
        seed_model(x.float())


def test_int_input_for_float_model_is_an_error(seed_model):
    with pytest.raises(blocks.InputShapeError, match="expects torch.float32 input but got torch.int64"):
        seed_model(torch.zeros(2, 1, 28, 28, dtype=torch.int64))


def test_embedding_model_accepts_int32_ids():
    spec = blocks.ModelSpec(input={"shape": [5], "dtype": "int64"},
                            backbone=[{"type": "embedding", "num_embeddings": 9, "embedding_dim": 3}, "flatten"],
                            head={"type": "softmax", "classes": 2})
    model = blocks.build(spec, seed=0)
    ids = torch.randint(0, 9, (4, 5))
    torch.testing.assert_close(model(ids.int()), model(ids))
    with pytest.raises(blocks.InputShapeError, match="expects torch.int64 input but got torch.float32"):
        model(ids.float())


def test_device_names():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    assert parse_device_name("auto") == "auto"
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        parse_device_name("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(blocks.DeviceMismatchError, match="CUDA is not available"):
            blocks.build("seed_cnn", device="cuda")


# --- predictions ---------------------------------------------------------------------------------
def test_predict_proba_and_predict_softmax(seed_model):
    x = torch.randn(6, 1, 28, 28)
    seed_model.train()
    probs = seed_model.predict_proba(x)
    assert seed_model.training  # restored
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(6))
    assert (probs >= 0).all()
    labels = seed_model.predict(x)
    assert labels.dtype == torch.int64
    assert torch.equal(labels, probs.argmax(dim=1))
    seed_model.eval()
    seed_model.predict(x)
    assert not seed_model.training
    assert not probs.requires_grad


def test_predict_uses_eval_mode():
    spec = blocks.ModelSpec(input={"shape": [8]}, backbone=[{"type": "dropout", "p": 0.9}],
                            head={"type": "softmax", "classes": 3})
    model = blocks.build(spec, seed=0).train()
    x = torch.randn(4, 8)
    first = model.predict_proba(x)
    assert torch.equal(first, model.predict_proba(x))  # no dropout noise
    assert model.training


@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.9])
def test_sigmoid_threshold(threshold):
    spec = blocks.ModelSpec(input={"shape": [4]}, head={"type": "sigmoid", "classes": 2,
                                                        "threshold": threshold})
    model = blocks.build(spec, seed=0)
    x = torch.randn(64, 4) * 3
    probs = model.predict_proba(x)
    torch.testing.assert_close(probs, torch.sigmoid(model(x)).detach())
    labels = model.predict(x)
    assert labels.shape == (64, 2)
    assert torch.equal(labels, (probs > threshold).long())


def test_multi_head_predictions_are_dicts():
    model = blocks.build("multitask", seed=0)
    x = torch.randn(5, 16)
    probs = model.predict_proba(x)
    labels = model.predict(x)
    assert set(probs) == set(labels) == {"kind", "tags"}
    torch.testing.assert_close(probs["kind"].sum(dim=1), torch.ones(5))
    assert torch.equal(labels["kind"], probs["kind"].argmax(dim=1))
    assert torch.equal(labels["tags"], (probs["tags"] > 0.5).long())
    assert probs["tags"].shape == (5, 3)


def test_head_losses_take_logits():
    spec = blocks.load_recipe("multitask").model
    soft, sig = spec.heads["kind"], spec.heads["tags"]
    assert isinstance(soft.loss(), torch.nn.CrossEntropyLoss)
    assert soft.loss().label_smoothing == pytest.approx(0.05)
    assert isinstance(sig.loss(), torch.nn.BCEWithLogitsLoss)
    weighted = blocks.SoftmaxHead(classes=3, class_weights=[1.0, 2.0, 3.0]).loss()
    assert weighted.weight.tolist() == [1.0, 2.0, 3.0]
    assert blocks.SigmoidHead(classes=2, pos_weight=3.0).loss().pos_weight.tolist() == [3.0, 3.0]
