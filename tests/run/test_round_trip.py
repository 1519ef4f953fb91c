"""One artifact, one truth: a run folder predicts the same from the CLI and from `blocks.load`.

For each bundled recipe with data: train through the CLI, then (in a fresh process) load the run
and predict on the same raw rows that `blocks predict` reads. Labels and probabilities must be
identical, before and after a `load` + `save` round trip into the same folder.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import blocks
from blocks.cli import main
from blocks.data.splits import load_splits

RECIPES = ["seed_cnn", "tabular_mlp", "residual_cnn", "multitask"]


def _raw_rows(name: str) -> np.ndarray:
    """The recipe's raw samples, as a user holds them (digits pixels 0..16, unscaled tables)."""
    splits = load_splits(blocks.load_recipe(name))
    return torch.cat([splits.val.x, splits.train.x])[:40].numpy().astype(np.float64)


def _write_rows(path: Path, rows: np.ndarray, features: list[str] | None) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        if features:
            writer.writerow(features)
        writer.writerows(rows.reshape(len(rows), -1).tolist())


def _safetensors(path: Path) -> tuple[dict, dict]:
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as handle:
        return handle.metadata(), {k: handle.get_tensor(k).tobytes() for k in handle.keys()}  # noqa: SIM118


def _safetensors_bytes(data: bytes, scratch: Path) -> tuple[dict, dict]:
    scratch.write_bytes(data)
    return _safetensors(scratch)


def _cli_subprocess(run: Path, rows: Path, out: Path) -> list[list[str]]:
    """`blocks predict` as a user runs it: its own process."""
    result = subprocess.run([sys.executable, "-m", "blocks", "predict", str(run), str(rows), "-o",
                             str(out)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return list(csv.reader(out.read_text().splitlines()))


FRESH = """
import sys, numpy as np, torch, blocks
run, rows, out, resave, source = sys.argv[1:6]
model = blocks.load(run)
assert not model.training, "load returns an eval-mode model"
x = np.load(rows)["x"]
probs = model.predict_proba(x)
probs = probs if isinstance(probs, dict) else {"output": probs}
cli = blocks.predict_run(run, source).probabilities  # what `blocks predict` computes
np.savez(out, **{k: v.numpy() for k, v in probs.items()},
         **{f"cli/{k}": v.numpy() for k, v in cli.items()})
if resave == "1":
    blocks.save(model, run)
"""


def _fresh_probs(run: Path, npz: Path, out: Path, source: Path, *,
                 resave: bool) -> dict[str, np.ndarray]:
    """Probabilities from `blocks.load` + `predict_proba` and from the CLI's `predict_run`, in a
    fresh process (one thread setting for both: float sums depend on it in the last bits)."""
    result = subprocess.run([sys.executable, "-c", FRESH, str(run), str(npz), str(out),
                             "1" if resave else "0", str(source)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    with np.load(out) as archive:
        return {k: archive[k] for k in archive.files}


@pytest.mark.slow
@pytest.mark.parametrize("name", RECIPES)
def test_cli_and_python_predict_the_same(name, tmp_path):
    run = tmp_path / "run"
    assert main(["train", name, "--out", str(run), "--epochs", "1", "--quiet", "--no-plots"]) == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    rows = _raw_rows(name)
    model = blocks.load(run)
    pre = model.spec.preprocess
    features = pre.features if pre is not None else None
    if features is None and rows.ndim > 2:  # CSV rows are flat; npz keeps the sample shape
        source = tmp_path / "rows.npz"
        np.savez(source, x=rows)
    else:
        source = tmp_path / "rows.csv"
        _write_rows(source, rows, features)
    np.savez(tmp_path / "x.npz", x=rows)

    cli = _cli_subprocess(run, source, tmp_path / "cli.csv")
    exact = blocks.predict_run(run, source)  # label names and heads
    fresh = _fresh_probs(run, tmp_path / "x.npz", tmp_path / "fresh.npz", source, resave=True)
    for head in exact.probabilities:
        assert np.array_equal(fresh[head], fresh[f"cli/{head}"]), f"{name}: head {head} differs"
    header = cli[0]
    for head in exact.probabilities:
        prefix = f"{head}/" if len(exact.probabilities) > 1 else ""
        for j, label in enumerate(exact.names[head]):
            column = [row[header.index(f"{prefix}p/{label}")] for row in cli[1:]]
            # full precision: each printed probability reads back to the same float32
            assert np.array_equal(np.array(column, dtype=np.float32), fresh[head][:, j])
    # the fresh process saved the loaded model into the run folder: nothing lost, same answers
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert set(after) == set(before)
    for file, data in before.items():  # recipe (data and train kept), run.json, history: same bytes
        if file.endswith(".safetensors"):  # metadata order is not fixed; tensors and metadata are
            assert _safetensors(run / file) == _safetensors_bytes(data, tmp_path / "old"), file
        else:
            assert after[file] == data, file
    assert _cli_subprocess(run, source, tmp_path / "cli2.csv") == cli
    again = _fresh_probs(run, tmp_path / "x.npz", tmp_path / "fresh2.npz", source, resave=False)
    assert all(np.array_equal(again[k], fresh[k]) for k in fresh)


def test_save_of_another_model_into_a_run_folder_is_refused(tmp_path):
    spec = blocks.ModelSpec(input={"shape": [3]}, head={"type": "softmax", "classes": 2})
    recipe = blocks.Recipe(model=spec, data={"synthetic": {"samples": 40}}, train={"epochs": 1})
    (tmp_path / "r.yaml").write_text(blocks.dump_recipe(recipe))
    assert main(["train", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run"), "--quiet",
                 "--no-plots"]) == 0
    other = blocks.build(blocks.ModelSpec(input={"shape": [3]},
                                          head={"type": "softmax", "classes": 3}), seed=0)
    with pytest.raises(blocks.BlocksError, match="holds the run of a different model"):
        blocks.save(other, tmp_path / "run")
    kept = blocks.load_recipe(tmp_path / "run" / "recipe.yaml")
    assert kept.data is not None and kept.model.head.classes == 2


def test_predict_accepts_numpy_lists_and_flat_rows():
    spec = blocks.ModelSpec(input={"shape": [1, 4, 4]}, backbone=["flatten"],
                            preprocess={"raw_shape": [16], "scale": 0.5, "standardize": True},
                            head={"type": "softmax", "classes": 3})
    model = blocks.build(spec, seed=0)
    x = np.random.default_rng(0).normal(size=(5, 16))
    model.preprocess_module.fit(torch.as_tensor(x, dtype=torch.float32))
    expected = model.predict_proba(torch.as_tensor(x, dtype=torch.float32))
    assert torch.equal(model.predict_proba(x), expected)  # float64 numpy, cast once
    assert torch.equal(model.predict_proba(x.tolist()), expected)
    assert torch.equal(model.predict(x), expected.argmax(-1))
    with pytest.raises(blocks.InputShapeError, match=r"expects input of shape \[batch, 16\]"):
        model.predict(np.zeros((5, 15)))
