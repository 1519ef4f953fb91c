"""Images from folders (issue 9 part 5): one sub-folder per class, decoded with Pillow, resized
to the model input, normalised by the model, augmented for training only."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import blocks
from blocks.cli import main
from blocks.data.images import augment_image, read_images
from blocks.data.splits import load_splits
from blocks.run.training import build_model
from blocks.spec.data import ImageAugment

PIL = pytest.importorskip("PIL.Image")

SEED_CNN = """\
model:
  name: seed-cnn-png
  input: {shape: [1, 28, 28]}
  backbone:
    - {type: conv2d, out_channels: 32, kernel_size: 3}
    - relu
    - flatten
  head: {type: softmax, classes: 10}
data:
  images: {path: digits, augment: {crop_scale: 0.9, rotate: 5}}
  val_fraction: 0.2
train: {epochs: 10, batch_size: 64, optimizer: {type: adam, lr: 0.002}, scheduler: {type: cosine}}
"""


def write_digits(folder: Path, count: int | None = None, size: int = 32) -> None:
    """sklearn's 8x8 digits as grey PNG files, upscaled, in folders d0 .. d9."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i, (pixels, target) in enumerate(zip(digits.images[:count], digits.target[:count],
                                             strict=True)):
        image = PIL.fromarray((pixels * 255 / 16).astype(np.uint8)).resize((size, size),
                                                                           PIL.Resampling.BILINEAR)
        (folder / f"d{target}").mkdir(parents=True, exist_ok=True)
        image.save(folder / f"d{target}" / f"{i:04d}.png")


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("png")
    write_digits(folder / "digits")
    (folder / "seed.yaml").write_text(SEED_CNN)
    assert main(["train", str(folder / "seed.yaml"), "--out", str(folder / "run"), "--quiet",
                 "--no-plots"]) == 0
    return folder, folder / "run"


@pytest.mark.slow
def test_png_digits_train_the_seed_cnn_from_a_recipe(digits_run):
    folder, run = digits_run
    info = json.loads((run / "run.json").read_text())
    assert info["final"]["val/accuracy"] >= 0.95
    saved = blocks.load_recipe(run / "recipe.yaml").model
    assert saved.head.labels == [f"d{i}" for i in range(10)]
    pre = saved.preprocess
    assert pre.raw_shape == [1, 28, 28] and pre.images == "crop"
    assert 0.1 < pre.channel_mean[0] < 0.5 and 0.1 < pre.channel_std[0] < 0.5


@pytest.mark.slow
def test_predict_on_image_files_equals_load_and_predict_proba(digits_run, capsys):
    folder, run = digits_run
    capsys.readouterr()
    assert main(["predict", str(run), str(folder / "digits" / "d7")]) == 0
    header, *rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    model = blocks.load(run)
    x, files = read_images(folder / "digits" / "d7", model)
    assert len(rows) == len(files) == len(list((folder / "digits" / "d7").iterdir()))
    probs = model.predict_proba(x)
    assert torch.equal(torch.tensor([[float(v) for v in r[1:]] for r in rows]), probs)
    assert sum(r[0] == "d7" for r in rows) >= 0.9 * len(rows)
    assert main(["evaluate", str(run), "--trust-paths", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["val/accuracy"] >= 0.95


def image_recipe(folder: Path, **images) -> blocks.Recipe:
    r = blocks.load_recipe({"model": {"input": {"shape": [1, 8, 8]}, "backbone": ["flatten"],
                                      "head": {"type": "softmax", "classes": 10}},
                            "data": {"images": {"path": "digits", **images}}})
    r._source_path = folder / "r.yaml"
    return r


def test_a_corrupt_png_is_a_located_error_or_skipped_when_asked(tmp_path):
    write_digits(tmp_path / "digits", count=40, size=8)
    bad = tmp_path / "digits" / "d3" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 10)
    with pytest.raises(blocks.SpecError) as info:
        load_splits(image_recipe(tmp_path))
    assert str(info.value).startswith(f"data.images.path: {bad}: not a readable image (")
    assert str(info.value).endswith("(1 bad file; set `skip_bad_files: true` to skip them)")
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image file\(s\): .*broken.png"):
        splits = load_splits(image_recipe(tmp_path, skip_bad_files=True))
    assert len(splits.train) + len(splits.val) == 40
    x, y = splits.train.dataset[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and 0 <= float(x.min()) <= float(x.max()) <= 1


def test_class_folders_must_match_the_head(tmp_path):
    write_digits(tmp_path / "digits", count=12, size=8)
    r = blocks.load_recipe({"model": {"input": {"shape": [1, 8, 8]}, "backbone": ["flatten"],
                                      "head": {"type": "softmax", "classes": 3}},
                            "data": {"images": {"path": "digits"}}})
    r._source_path = tmp_path / "r.yaml"
    with pytest.raises(blocks.SpecError, match=r"^model.head.classes: digits has 10 class folders "
                       r"\(d0, d1, .*\) but the head has 3 classes$"):
        load_splits(r)


def test_uncached_folders_decode_on_the_fly_the_same(tmp_path):
    write_digits(tmp_path / "digits", count=30, size=12)
    cached = load_splits(image_recipe(tmp_path))
    lazy = load_splits(image_recipe(tmp_path, cache_mb=0))
    assert cached.train.dataset.cache is not None and lazy.train.dataset.cache is None
    assert torch.equal(cached.train.as_tuple()[0], lazy.train.as_tuple()[0])
    assert cached.model_spec == lazy.model_spec


def test_augmentation_keeps_shape_and_range():
    torch.manual_seed(0)
    x = torch.rand(3, 16, 16)
    spec = ImageAugment(flip=True, rotate=20, crop_scale=0.5, jitter=0.3)
    for _ in range(5):
        y = augment_image(x, spec)
        assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert torch.equal(augment_image(x, ImageAugment()), x)


def test_workers_decode_in_other_processes_to_the_same_batches(tmp_path):
    write_digits(tmp_path / "digits", count=24, size=8)
    splits = load_splits(image_recipe(tmp_path, workers=2, cache_mb=0))
    model = build_model(splits, seed=0)
    trainer = blocks.Trainer(model, {"epochs": 1, "batch_size": 8}, quiet=True)
    in_workers = trainer.evaluate(splits.train.data())
    splits.train.dataset.num_workers = 0
    assert trainer.evaluate(splits.train.data()) == in_workers
