"""Issue 20, items 3, 4, 5, 6 and 8 through the CLI: each bad input is exit 2 with a message
naming the file or field, and no user file changes (hashed before and after)."""

from __future__ import annotations

import errno
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from blocks.cli import main
from tests.hostile_support import TINY, fill, hashes, small_tmpfs

BASE = ("model:\n  input: {shape: [4]}\n  backbone: [{type: linear, out_features: 8}]\n"
        "  head: {type: softmax, classes: 2}\n")


def _run(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


# --- 6. silent coercions -------------------------------------------------------------------------
@pytest.mark.parametrize(("extra", "where", "expect"), [
    ("data: {dataset: digits, classes: [5, false]}\n", "5:38",
     "data.classes[1]: Input should be a valid integer, got the boolean False"),
    ("train: {optimizer: {type: adam, lr: '12'}}\n", "5:37",
     "train.optimizer.lr: Input should be a valid number, got str '12' (text: remove the quotes)"),
    ("train: {optimizer: {type: sgd, momentum: '0.9'}}\n", "5:42",
     "train.optimizer.momentum: Input should be a valid number, got str '0.9'"),
    ("train: {clip_grad_norm: '1.0'}\n", "5:25", "train.clip_grad_norm: Input should be a valid number"),
    ("data: {synthetic: {noise: '0.1'}, val_fraction: '0.2'}\n", "5:27",
     "data.synthetic.noise: Input should be a valid number, got str '0.1'"),
])
def test_quoted_numbers_and_booleans_are_refused_where_they_were_coerced(extra, where, expect,
                                                                         tmp_path, capsys):
    path = tmp_path / "r.yaml"
    path.write_text(BASE + extra)
    before = hashes(tmp_path)
    code, out = _run(["validate", str(path)], capsys)
    assert code == 2 and f"{path}:{where}: {expect}" in out, out
    assert hashes(tmp_path) == before


def test_exponent_floats_are_numbers_as_in_yaml_1_2(tmp_path, capsys):
    path = tmp_path / "r.yaml"
    path.write_text(BASE + "train: {optimizer: {type: adam, lr: 1e-3, eps: 1E-8}}\n")
    assert _run(["validate", str(path)], capsys)[0] == 0


@pytest.mark.parametrize(("labels", "expect"), [
    ("[a, '']", "model.head.labels: labels[1] is '': a class label must be a non-empty name"),
    ("['  ', b]", "labels[0] is '  '"),
    ("[a, a]", "labels[1] 'a' repeats labels[0]"),
])
def test_empty_or_repeated_class_labels_are_refused(labels, expect, tmp_path, capsys):
    path = tmp_path / "r.yaml"
    path.write_text(BASE.replace("classes: 2}", f"classes: 2, labels: {labels}}}"))
    code, out = _run(["validate", str(path)], capsys)
    assert code == 2 and f"{path}:4:" in out and expect in out, out


@pytest.mark.parametrize("key", ["device", "dtype"])
def test_torch_layer_placement_kwargs_are_refused_by_validate(key, tmp_path, capsys):
    path = tmp_path / "r.yaml"
    path.write_text(BASE.replace("{type: linear, out_features: 8}", "{type: torch, layer: Linear, "
                                 f"kwargs: {{in_features: 4, out_features: 8, {key}: meta}}}}"))
    code, out = _run(["validate", str(path)], capsys)
    assert code == 2 and f"{path}:3:14: model.backbone[0]: kwargs: {key} cannot be set per layer" in out


# --- 3. an external library that fails to import ---------------------------------------------
@pytest.mark.multiprocess
@pytest.mark.parametrize("library", ["torchvision", "timm"])
def test_a_library_that_fails_to_import_is_exit_2_naming_it_and_the_fix(library, tmp_path):
    fake = tmp_path / "site" / library
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(f'raise RuntimeError("operator {library}::nms does not exist")\n')
    recipes = []
    for i, model in enumerate(["resnet18", "no_such_model_xyz"]):
        recipe = tmp_path / f"r{i}.yaml"
        recipe.write_text(f"model:\n  input: {{shape: [3, 32, 32]}}\n  backbone: [{{type: {library}, "
                          f"model: {model}}}]\n  head: {{type: softmax, classes: 2}}\n"
                          "data: {synthetic: {samples: 8}}\ntrain: {epochs: 1}\n")
        recipes.append(recipe)
    bad_name = tmp_path / "r2.yaml"
    bad_name.write_text(recipes[0].read_text().replace("resnet18", "'bad name'"))
    before = hashes(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    for verb in ("validate", "train"):
        for recipe in recipes:
            argv = [verb, str(recipe)] + (["--out", str(tmp_path / "run"), "--quiet"] if verb == "train" else [])
            done = subprocess.run([sys.executable, "-m", "blocks", *argv], env=env,
                                  capture_output=True, text=True, timeout=300)
            out = done.stdout + done.stderr
            assert done.returncode == 2, out
            assert f"{recipe}:3:" in out and "model.backbone[0].model" in out
            assert (f"the {library} backbone needs {library}, which is installed but fails to import: "
                    f"RuntimeError: operator {library}::nms does not exist") in out
            assert "fix: pip install --force-reinstall" in out and "internal error" not in out
    done = subprocess.run([sys.executable, "-m", "blocks", "validate", str(bad_name)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and f"'bad name' is not a {library} model name" in done.stdout + done.stderr
    assert hashes(tmp_path) == before | hashes(tmp_path / "site")


# --- 4. weights files that are not weights ------------------------------------------------------
def _weights_cases(folder: Path) -> dict[str, tuple[Path, str]]:
    (folder / "text.pth").write_text("hello, I am text\n")
    (folder / "empty.pth").write_bytes(b"")
    (folder / "text.safetensors").write_text("hello\n")
    (folder / "a_folder").mkdir()
    torch.save({"backbone.0.weight": torch.full((8, 4), float("nan")),
                "backbone.0.bias": torch.zeros(8), "head.weight": torch.zeros(2, 8),
                "head.bias": torch.zeros(2)}, folder / "nan.pth")
    save_file({"backbone.0.weight": torch.zeros(8, 4), "backbone.0.bias": torch.tensor([float("inf")] * 8),
               "head.weight": torch.zeros(2, 8), "head.bias": torch.zeros(2)},
              str(folder / "inf.safetensors"))
    return {
        "text": (folder / "text.pth", "is not a PyTorch weights file: torch.save writes a zip "
                 "archive, this file starts with b'hello, I' (text)"),
        "empty": (folder / "empty.pth", "is empty"),
        "system_file": (Path("/etc/hostname") if Path("/etc/hostname").is_file() else
                        folder / "text.pth", "is not a PyTorch weights file"),
        "device": (Path("/dev/null"), "is not a regular file"),
        "bad_safetensors": (folder / "text.safetensors", "is not a safetensors file"),
        "missing": (folder / "nothere.pth", "does not exist"),
        "folder": (folder / "a_folder", "model.safetensors' does not exist"),
    }


@pytest.mark.parametrize("case", ["text", "empty", "system_file", "device", "bad_safetensors",
                                  "missing", "folder"])
def test_validate_and_train_refuse_a_weights_file_that_is_not_one(case, tmp_path, capsys):
    path, expect = _weights_cases(tmp_path)[case]
    recipe = tmp_path / "r.yaml"
    recipe.write_text(TINY.replace("classes: 2}\n", f"classes: 2}}\n  weights: {{file: '{path}'}}\n"))
    before = hashes(tmp_path)
    code, out = _run(["validate", str(recipe)], capsys)
    assert code == 2, out
    assert f"{recipe}:5:" in out and "model.weights.file: weights file" in out and expect in out, out
    code, out = _run(["train", str(recipe), "--out", str(tmp_path / "run"), "--quiet", "--no-plots"],
                     capsys)
    assert code == 2 and "model.weights" in out and "internal error" not in out, out
    assert hashes(tmp_path) == before


@pytest.mark.parametrize(("name", "tensor", "count"), [("nan.pth", "backbone.0.weight", 32),
                                                       ("inf.safetensors", "backbone.0.bias", 8)])
def test_nan_or_inf_weights_are_refused_naming_the_tensor(name, tensor, count, tmp_path, capsys):
    _weights_cases(tmp_path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(TINY.replace("classes: 2}\n", f"classes: 2}}\n  weights: {{file: {name}}}\n"))
    before = hashes(tmp_path)
    code, out = _run(["train", str(recipe), "--out", str(tmp_path / "run"), "--quiet", "--no-plots"],
                     capsys)
    assert code == 2, out
    assert f"model.weights: the checkpoint's tensor '{tensor}' holds {count} NaN" in out
    assert "NaN or infinite values" in out and "nothing was loaded" in out
    assert hashes(tmp_path) == before


# --- 5. image folders ----------------------------------------------------------------------------
def _png_bomb(path: Path) -> None:
    """A 30000 x 30000 PNG in a few hundred bytes (Pillow refuses it when opened)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))


def _image_recipe(folder: Path, root: Path, extra: str = "") -> Path:
    recipe = folder / "r.yaml"
    recipe.write_text("model:\n  input: {shape: [1, 8, 8]}\n  backbone: [flatten, {type: linear, "
                      "out_features: 4}]\n  head: {type: softmax, classes: 2}\n"
                      f"data: {{images: {{path: {root}{extra}}}, val_fraction: 0.0}}\n"
                      "train: {epochs: 1, batch_size: 4}\n")
    return recipe


def _grey(path: Path, value: int = 128) -> None:
    Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(path)


def test_a_16_bit_png_keeps_its_contrast(tmp_path):
    from blocks.data.images import decode_image

    ramp = np.linspace(0, 65535, 64, dtype=np.float64).reshape(8, 8)
    Image.fromarray(ramp.astype(np.uint16)).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as image:
        assert image.mode == "I;16"
    got = decode_image(tmp_path / "deep.png", (1, 8, 8), "stretch")[0].numpy()
    assert np.array_equal(got, np.rint(ramp * 255 / 65535).astype(np.uint8))  # not all 255
    rgb = decode_image(tmp_path / "deep.png", (3, 8, 8), "stretch").numpy()
    assert all(np.array_equal(rgb[c], got) for c in range(3))


def test_a_decompression_bomb_is_a_bad_file_that_skip_bad_files_skips(tmp_path, capsys):
    root = tmp_path / "imgs"
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            _grey(root / label / f"{i}.png", 40 + 100 * (label == "b"))
    _png_bomb(root / "a" / "bomb.png")
    recipe = _image_recipe(tmp_path, root)
    before = hashes(root)
    began = time.perf_counter()
    code, out = _run(["train", str(recipe), "--out", str(tmp_path / "run"), "--quiet", "--no-plots"],
                     capsys)
    assert code == 2, out
    assert "data.images.path" in out and f"{root / 'a' / 'bomb.png'}: refused, a possible " \
        "decompression bomb" in out and "skip_bad_files: true" in out
    recipe = _image_recipe(tmp_path, root, ", skip_bad_files: true")
    with pytest.warns(UserWarning, match="skipped 1 unreadable image file"):
        code, out = _run(["train", str(recipe), "--out", str(tmp_path / "run2"), "--quiet",
                          "--no-plots"], capsys)
    assert code == 0, out
    assert time.perf_counter() - began < 60 and hashes(root) == before


def test_an_empty_class_folder_is_refused_naming_it(tmp_path, capsys):
    root = tmp_path / "imgs"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    _grey(root / "a" / "0.png")
    recipe = _image_recipe(tmp_path, root)
    before = hashes(tmp_path)
    code, out = _run(["train", str(recipe), "--out", str(tmp_path / "run"), "--quiet", "--no-plots"],
                     capsys)
    assert code == 2, out
    assert f"data.images.path: class folder '{root / 'b'}' holds no files: its class would train " \
        "with no samples" in out
    assert hashes(tmp_path) == before


def test_newlines_in_file_and_class_names_are_escaped(tmp_path, capsys):
    root = tmp_path / "imgs"
    (root / "a\nb").mkdir(parents=True)
    (root / "c").mkdir()
    _grey(root / "c" / "0.png")
    (root / "a\nb" / "x\n\x1b[2Jy.png").write_bytes(b"not an image")
    recipe = _image_recipe(tmp_path, root)
    code, out = _run(["train", str(recipe), "--out", str(tmp_path / "run"), "--quiet", "--no-plots"],
                     capsys)
    assert code == 2 and "a\\nb/x\\n\\x1b[2Jy.png: not a readable image" in out, out
    assert len(out.strip().splitlines()) == 1 and "\x1b" not in out


# --- 8. loggers and a full disk during train ---------------------------------------------------
@pytest.mark.slow
def test_mlflow_without_a_server_costs_seconds_and_a_warning(tmp_path, capsys, monkeypatch):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(TINY.replace("epochs: 1", "epochs: 2, loggers: [csv, mlflow]"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    began = time.perf_counter()
    with pytest.warns(UserWarning, match=r"the mlflow logger failed and is switched off; training "
                      r"goes on: ConnectionError: no MLflow tracking server answers at "
                      r"http://127.0.0.1:9 \(MLFLOW_TRACKING_URI\) within 5 s"):
        code, out = _run(["train", str(recipe), "--out", str(tmp_path / "run"), "--quiet",
                          "--no-plots"], capsys)
    assert code == 0 and (tmp_path / "run" / "model.safetensors").exists()
    assert time.perf_counter() - began < 30  # MLflow's own retries took 4.5 minutes


@pytest.mark.slow
def test_loggers_pointed_at_a_file_warn_and_training_goes_on(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlruns").write_text("a file where the MLflow store would go\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(TINY.replace("epochs: 1", "epochs: 1, loggers: [csv, mlflow]"))
    before = hashes(tmp_path)
    with pytest.warns(UserWarning, match="the mlflow logger failed and is switched off"):
        code, out = _run(["train", str(recipe), "--out", str(tmp_path / "run"), "--quiet",
                          "--no-plots"], capsys)
    assert code == 0, out
    assert {k: v for k, v in hashes(tmp_path).items() if "/run/" not in k} == before


def test_a_full_disk_during_train_is_exit_2_naming_the_file(tmp_path, capsys, monkeypatch):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(TINY.replace("out_features: 8}", "out_features: 4000}"))
    before = hashes(recipe)
    with small_tmpfs(tmp_path / "full", "96k") as mounted:
        if mounted is not None:
            out = mounted / "run"
        else:  # simulated: the checkpoint writer meets ENOSPC
            import blocks.train.checkpoint as checkpoint

            def full(*args, **kwargs):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            monkeypatch.setattr(checkpoint, "save_file", full)
            out = tmp_path / "run"
        code, text = _run(["train", str(recipe), "--out", str(out), "--quiet", "--no-plots"], capsys)
        assert code == 2, text
        assert f"{out / 'checkpoint.safetensors'}: cannot be written (No space left on device)" in text
        assert not any(p.name.endswith(".tmp") for p in out.iterdir()) and not (out / ".lock").exists()
        if mounted is not None:
            fill(mounted)
    assert hashes(recipe) == before
