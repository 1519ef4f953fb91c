"""Run folders trained once for the serve tests (the subprocess server is serve_support.py).

Three kinds of input: a tabular CSV run (a categorical column, missing cells imputed, class
names as labels), the bundled 8x8 digits (rows of 64 numbers) and a folder of PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from blocks.cli import main

DIGITS = """\
model:
  name: digits-serve
  input: {shape: [1, 8, 8]}
  backbone:
    - {type: conv2d, out_channels: 8, kernel_size: 3, padding: 1}
    - relu
    - flatten
  head: {type: softmax, classes: 10}
data: {dataset: digits, val_fraction: 0.2}
train: {epochs: 2, batch_size: 64, optimizer: {type: adam, lr: 0.01}, seed: 0}
"""

PNG = """\
model:
  name: png-serve
  input: {shape: [1, 12, 12]}
  backbone:
    - {type: conv2d, out_channels: 4, kernel_size: 3}
    - relu
    - flatten
  head: {type: softmax, classes: 3}
data:
  images: {path: pics}
  val_fraction: 0.2
train: {epochs: 2, batch_size: 16, optimizer: {type: adam, lr: 0.01}, seed: 0}
"""


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _train(recipe: Path, out: Path, *extra: str) -> Path:
    assert main(["train", str(recipe), "--out", str(out), "--quiet", "--no-plots", *extra]) == 0
    return out


@pytest.fixture(scope="session")
def wine_run(tmp_path_factory) -> tuple[Path, Path]:
    """(folder with features.csv and test.csv, run folder) of the wine CSV with class names,
    a categorical `alcohol_level` and missing cells (median-imputed)."""
    from tests.train.test_tabular_data import write_wine

    folder = tmp_path_factory.mktemp("wine")
    write_wine(folder)
    return folder, _train(folder / "wine.yaml", folder / "run", "--epochs", "8")


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("digits")
    (folder / "digits.yaml").write_text(DIGITS)
    return _train(folder / "digits.yaml", folder / "run")


@pytest.fixture(scope="session")
def png_run(tmp_path_factory) -> tuple[Path, Path]:
    """(folder of PNG class folders `pics/`, run folder) of a tiny CNN on 3 digit classes."""
    from PIL import Image
    from sklearn.datasets import load_digits

    folder = tmp_path_factory.mktemp("png")
    digits = load_digits()
    for i in range(90):
        target = int(digits.target[i]) % 3
        pixels = (digits.images[i] * 255 / 16).astype(np.uint8)
        (folder / "pics" / f"c{target}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).resize((16, 14)).save(folder / "pics" / f"c{target}" / f"{i:03d}.png")
    (folder / "png.yaml").write_text(PNG)
    return folder, _train(folder / "png.yaml", folder / "run")
