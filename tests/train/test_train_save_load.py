"""`blocks.save` / `blocks.load`: YAML + safetensors, no pickle, atomic writes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from trainkit import learnable_data, mlp_spec

import blocks
from blocks.cli import main
from blocks.core import files as io_utils
from blocks.run import folder as runs


def test_round_trip_predictions_equal(tmp_path):
    model = blocks.build(mlp_spec(), seed=3)
    x, y = learnable_data(48)
    blocks.Trainer(model, {"epochs": 1}, quiet=True).fit((x, y))
    blocks.save(model, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.safetensors", "recipe.yaml", "run.json"]
    again = blocks.load(tmp_path / "m")
    assert again.spec == model.spec
    model.eval()
    assert torch.equal(again.predict_proba(x), model.predict_proba(x))
    assert torch.equal(again.predict(x), model.predict(x))
    for name, value in model.state_dict().items():
        assert torch.equal(again.state_dict()[name], value)


def _no_pickle(path):
    for file in path.rglob("*"):
        if file.is_file():
            head = file.read_bytes()[:4]
            assert file.suffix not in {".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt"}, file
            assert not head.startswith(b"\x80"), f"{file} looks like a pickle"
            assert not head.startswith(b"PK\x03\x04"), f"{file} looks like a torch.save zip"


def test_run_folder_has_no_pickle(tmp_path, monkeypatch):
    path = tmp_path / "tiny.yaml"
    path.write_text("model: {input: {shape: [5]}, head: {type: softmax, classes: 2}}\n"
                    "data: {synthetic: {samples: 40}}\ntrain: {epochs: 1}\n")

    def forbidden(*args, **kwargs):
        raise AssertionError("torch.save must not be used")

    monkeypatch.setattr(torch, "save", forbidden)
    assert main(["train", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"recipe.yaml", "model.safetensors", "checkpoint.safetensors", "history.json",
            "metrics.csv", "metrics.jsonl", "run.json"} <= names
    _no_pickle(tmp_path / "run")


def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    model = blocks.build(mlp_spec(), seed=3)
    blocks.save(model, tmp_path)
    old_weights = (tmp_path / "model.safetensors").read_bytes()
    old_recipe = (tmp_path / "recipe.yaml").read_bytes()

    def broken_writer(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:  # half a file, then a crash
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(runs, "save_file", broken_writer)
    other = blocks.build(mlp_spec(), seed=4)
    with pytest.raises(OSError, match="disk full"):
        blocks.save(other, tmp_path)
    assert (tmp_path / "model.safetensors").read_bytes() == old_weights
    assert (tmp_path / "recipe.yaml").read_bytes() == old_recipe  # same spec: same text
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    loaded = blocks.load(tmp_path)
    assert torch.equal(loaded.state_dict()["head.weight"], model.state_dict()["head.weight"])


def test_atomic_write_text_failure_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "history.json"
    target.write_text("old")

    def fail_replace(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(io_utils.os, "replace", fail_replace)
    with pytest.raises(OSError):
        io_utils.atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["history.json"]


def test_failed_checkpoint_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    from blocks.train import checkpoint

    model = blocks.build(mlp_spec(), seed=3)
    trainer = blocks.Trainer(model, {"epochs": 1}, run_dir=tmp_path, quiet=True)
    trainer.fit(learnable_data(32))
    saved = (tmp_path / "checkpoint.safetensors").read_bytes()

    def broken(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"xx")
        raise RuntimeError("interrupted")

    monkeypatch.setattr(checkpoint, "save_file", broken)
    with pytest.raises(RuntimeError, match="interrupted"):
        trainer.save_checkpoint()
    assert (tmp_path / "checkpoint.safetensors").read_bytes() == saved
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
