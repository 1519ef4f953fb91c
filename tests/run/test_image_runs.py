"""A run trained on an image folder, used as a new user would (issue 24 items 2, 7, 8, 9): held-out
image folders for `evaluate`, `predict --skip-bad-files`, warnings printed as CLI messages, and
`validate` decoding the images. Every check goes through `blocks` in a subprocess, and the
Python answer (in a fresh process) must equal the CLI's."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import blocks

PIL = pytest.importorskip("PIL.Image")

RECIPE = """\
model:
  input: {shape: [1, 8, 8]}
  backbone: [flatten, {type: linear, out_features: 32}, relu]
  head: {type: softmax, classes: 10}
data:
  images: {path: train}
train: {epochs: 4, batch_size: 32, optimizer: {type: adam, lr: 0.01}}
"""


def write_digits(folder: Path, rows: range, skip: tuple[int, ...] = ()) -> None:
    """sklearn's 8x8 digits as grey PNG files in class folders d0 .. d9."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i in rows:
        target = int(digits.target[i])
        if target in skip:
            continue
        (folder / f"d{target}").mkdir(parents=True, exist_ok=True)
        PIL.fromarray((digits.images[i] * 255 / 16).astype(np.uint8)).save(
            folder / f"d{target}" / f"{i:04d}.png")


def blocks_cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "blocks", *argv], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def fresh_python(code: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """train/ (300 images), held_out/ (100 others, class d0 missing: folder order would shift
    every class id by one), recipe.yaml, and runs/digits trained from it."""
    root = tmp_path_factory.mktemp("images")
    write_digits(root / "train", range(300))
    write_digits(root / "held_out", range(300, 400), skip=(0,))
    (root / "recipe.yaml").write_text(RECIPE)
    blocks.run_recipe(root / "recipe.yaml", root / "runs" / "digits", plots=False)
    return root


def expected_accuracy(run: Path, folder: Path) -> float:
    """Accuracy computed by hand: each class folder's images decoded as `blocks predict` reads
    them, compared with the class id the run's labels give the folder's name."""
    from blocks.data.images import read_images

    model = blocks.load(run)
    labels = model.label_names()
    right = total = 0
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        x, _ = read_images(sub, model)
        right += int((model.predict(x) == labels.index(sub.name)).sum())
        total += len(x)
    return right / total


@pytest.mark.slow
def test_evaluate_a_held_out_image_folder_by_the_runs_labels(project):
    run, held_out = project / "runs" / "digits", project / "held_out"
    done = blocks_cli("evaluate", str(run), str(held_out), "--json", cwd=project)
    assert done.returncode == 0, done.stderr
    cli = json.loads(done.stdout)
    assert set(cli) == {"test/loss", "test/accuracy"}
    assert cli["test/accuracy"] == pytest.approx(expected_accuracy(run, held_out), abs=1e-12)
    python = json.loads(fresh_python(
        "import json, blocks; print(json.dumps(blocks.evaluate_run('runs/digits', 'held_out')))",
        project))
    assert python == cli

    (held_out / "cats").mkdir()
    try:
        done = blocks_cli("evaluate", str(run), str(held_out), cwd=project)
    finally:
        (held_out / "cats").rmdir()
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr == (f"error: {held_out / 'cats'}: class folder 'cats' is not one of the "
                           "run's labels (d0, d1, d2, d3, d4, d5, d6, d7, d8, d9)\n")


@pytest.mark.slow
def test_predict_skip_bad_files_writes_the_good_rows_and_lists_the_bad(project, tmp_path):
    run = project / "runs" / "digits"
    folder = tmp_path / "photos"
    shutil.copytree(project / "held_out" / "d3", folder / "d3")
    clean = blocks_cli("predict", str(run), str(folder), cwd=project)
    assert clean.returncode == 0, clean.stderr
    (folder / "d3" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 10)
    (folder / "d3" / "aa_notes.png").write_text("not an image")

    refused = blocks_cli("predict", str(run), str(folder), cwd=project)
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.startswith(f"error: {folder / 'd3' / 'aa_notes.png'}: not a readable image")

    done = blocks_cli("predict", str(run), str(folder), "--skip-bad-files", cwd=project)
    assert done.returncode == 0, done.stderr
    err = done.stderr.splitlines()
    good = sorted(p.name for p in (project / "held_out" / "d3").iterdir())
    assert err[0] == (f"warning: skipped 2 of {len(good) + 2} image file(s) that are not "
                      "readable images:")
    assert err[1].startswith(f"  {folder / 'd3' / 'aa_notes.png'}: not a readable image (")
    assert err[2].startswith(f"  {folder / 'd3' / 'broken.png'}: not a readable image (")
    assert len(err) == 3 and "Traceback" not in done.stderr
    header, *rows = list(csv.reader(io.StringIO(done.stdout)))
    plain_header, *plain_rows = list(csv.reader(io.StringIO(clean.stdout)))
    assert header == ["file", *plain_header]
    assert [r[0] for r in rows] == [f"d3/{name}" for name in good]
    assert [r[1:] for r in rows] == plain_rows  # a good file gets the answer it gets alone

    python = fresh_python(
        "import json; from pathlib import Path\n"
        "from blocks.run.image_predict import predict_image_files\n"
        f"result = predict_image_files({str(run)!r}, {str(folder)!r})\n"
        f"print(json.dumps([result.table(Path({str(folder)!r})), [str(p) for p, _ in result.bad]]))",
        project)
    (py_header, py_rows), bad = json.loads(python)
    assert [py_header, *py_rows] == [header, *rows]
    assert bad == [str(folder / "d3" / "aa_notes.png"), str(folder / "d3" / "broken.png")]

    for name in good:
        (folder / "d3" / name).unlink()
    done = blocks_cli("predict", str(run), str(folder), "--skip-bad-files", cwd=project)
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {folder}: none of the 2 image file(s) is readable")


@pytest.mark.slow
def test_validate_decodes_the_images_and_warnings_print_as_cli_messages(project, tmp_path):
    shutil.copytree(project / "train", tmp_path / "train")
    bad = tmp_path / "train" / "d5" / "cut.png"
    good = next((tmp_path / "train" / "d5").iterdir()).read_bytes()
    bad.write_bytes(good[: len(good) // 2])  # a truncated PNG: its header opens fine
    (tmp_path / "recipe.yaml").write_text(RECIPE)

    done = blocks_cli("validate", "recipe.yaml", cwd=tmp_path)
    assert done.returncode == 2, done.stdout
    assert done.stdout.startswith(f"recipe.yaml:6:18: data.images.path: {bad}: not a readable "
                                  "image (")
    assert done.stdout.endswith("(1 bad file among 301 checked; set `skip_bad_files: true` to "
                                "skip them)\n")
    trained = blocks_cli("train", "recipe.yaml", "--epochs", "1", "-q", "--no-plots", cwd=tmp_path)
    assert trained.returncode == 2
    message = done.stdout.split(": data.images.path: ")[1].split(" (1 bad file")[0]
    assert trained.stderr.startswith(f"error: recipe.yaml:6:18: data.images.path: {message} "
                                     "(1 bad file;")

    (tmp_path / "recipe.yaml").write_text(RECIPE.replace("{path: train}",
                                                         "{path: train, skip_bad_files: true}"))
    done = blocks_cli("validate", "recipe.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout
    assert done.stdout.splitlines()[1] == ("  note: data.images: 1 bad file among 301 checked will "
                                          f"be skipped (skip_bad_files): {bad}")
    # bounded: a limit of 5 files decodes 5 and says so
    limited = fresh_python(
        "import blocks.data.image_check as check; check.CHECK_FILES = 5\n"
        "from blocks.cli import main; main(['validate', 'recipe.yaml'])", tmp_path)
    assert limited.splitlines()[1] == ("  note: data.images: decoded 5 of 301 image files (a "
                                       "sample; stopped at 5 files); training reads the rest")

    # the skip warning of training, printed like every other CLI message
    trained = blocks_cli("train", "recipe.yaml", "--epochs", "1", "-q", "--no-plots", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert trained.stderr == f"warning: skipped 1 unreadable image file(s): {bad}\n"
