"""The offline fine-tuning demo of docs/fine-tuning.md, through the CLI as a user runs it:
pretrain on the digits 0-4, fine-tune the backbone under a new head on the digits 5-9."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import blocks
from blocks.cli import main
from blocks.run.training import build_model


@pytest.fixture(scope="module")
def pretrained_root(tmp_path_factory):
    """`blocks train pretrain_digits` once, into WORKDIR/runs/pretrain_digits."""
    root = tmp_path_factory.mktemp("demo")
    out = root / "runs" / "pretrain_digits"
    assert main(["train", "pretrain_digits", "--out", str(out), "--quiet", "--no-plots"]) == 0
    return root


@pytest.fixture
def pretrained(pretrained_root, monkeypatch):
    """The pretrained run, with its working folder as the current one (as after the CLI step)."""
    monkeypatch.chdir(pretrained_root)
    return pretrained_root / "runs" / "pretrain_digits"


def history(run) -> list[dict]:
    return json.loads((run / "history.json").read_text())


def test_fine_tuning_the_digits_0_4_backbone_on_digits_5_9_reaches_97_percent(pretrained, capsys):
    assert history(pretrained)[-1]["val/accuracy"] >= 0.97
    assert main(["train", "finetune_digits", "--quiet", "--no-plots"]) == 0
    run = pretrained.parent / "finetune_digits"
    accuracy = [record["val/accuracy"] for record in history(run)]
    # epochs 1-3 train the head alone on the pretrained, frozen features; from epoch 4 all trains
    assert min(accuracy[:3]) >= 0.95, accuracy
    assert accuracy[-1] >= 0.97, accuracy
    # the backbone started from the pretrained one and then moved; the head is new
    before, after = load_file(str(pretrained / "model.safetensors")), load_file(str(run / "model.safetensors"))
    assert not torch.equal(before["backbone.0.weight"], after["backbone.0.weight"])
    assert (before["backbone.0.weight"] - after["backbone.0.weight"]).abs().max() < 0.1
    # `blocks evaluate` measures the saved model: init_from is not applied again outside training
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["val/accuracy"] == pytest.approx(accuracy[-1])
    model = blocks.load(run)
    assert model.spec.head.labels == ["5", "6", "7", "8", "9"]


def test_the_frozen_phase_keeps_the_pretrained_backbone_exactly(pretrained):
    from blocks.data.splits import load_splits

    recipe = blocks.load_recipe("finetune_digits")
    splits = load_splits(recipe)
    model = build_model(splits, seed=recipe.train.seed)
    saved = load_file(str(pretrained / "model.safetensors"))
    checks = []

    def backbone_is_pretrained(trainer, record):
        state = trainer.model.state_dict()
        checks.append(all(torch.equal(state[k], saved[k]) for k in state if k.startswith("backbone.")))

    spec = recipe.train.model_copy(update={"epochs": 4})
    blocks.Trainer(model, spec, quiet=True, callbacks=[backbone_is_pretrained]).fit(
        splits.train.as_tuple())
    assert checks == [True, True, True, False]


def test_a_missing_pretrained_run_is_a_located_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "finetune_digits", "--quiet", "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "error: train.init_from.path: weights file 'runs/pretrain_digits' does not exist" in err


def test_class_selection_keeps_and_relabels_the_samples():
    from blocks.data.splits import load_splits

    recipe = blocks.load_recipe("finetune_digits")
    splits = load_splits(recipe.model_copy(update={"data": recipe.data.model_copy(
        update={"val_fraction": 0.0})}))
    # the digits set has 182, 181, 179, 174 and 180 images of the digits 5 to 9
    assert torch.bincount(splits.train.y).tolist() == [182, 181, 179, 174, 180]
    with pytest.raises(blocks.SpecError, match=r"data\.classes: no samples of class 12 "):
        load_splits(blocks.load_recipe({**recipe.model_dump(mode="json", exclude_none=True),
                                        "data": {"dataset": "digits", "classes": [1, 12]}}))
    with pytest.raises(blocks.SpecError, match=r"data\.classes: class ids must be distinct, got \[3, 3\]"):
        blocks.load_recipe({**recipe.model_dump(mode="json", exclude_none=True),
                            "data": {"dataset": "digits", "classes": [3, 3]}})
