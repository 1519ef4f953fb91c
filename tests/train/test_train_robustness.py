"""Run folders, data and resume under misuse: nothing lost, nothing silently wrong."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset
from trainkit import linear_spec, mlp_spec, toy_data

import blocks
from blocks.cli import main
from blocks.train.trainer import Trainer, TrainingError


def write_table(path, header, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture
def tabular(tmp_path):
    """A CSV of two informative features (a, b) and a 0/1 target, with its recipe."""
    g = np.random.default_rng(0)
    a, b = g.normal(5, 2, 120), g.normal(-3, 0.5, 120)
    t = ((a - 5) / 2 + (b + 3) / 0.5 > 0).astype(int)
    write_table(tmp_path / "train.csv", ["a", "b", "t"], zip(a, b, t, strict=True))
    (tmp_path / "r.yaml").write_text(
        "model:\n  name: tab\n  input: {shape: [2]}\n  head: {type: softmax, classes: 2}\n"
        "data: {csv: {path: train.csv, target: t}, val_fraction: 0.25}\n"
        "train: {epochs: 15, batch_size: 16, optimizer: {type: adam, lr: 0.05}}\n")
    return tmp_path


def read_rows(path):
    return list(csv.reader(path.read_text().splitlines()))[1:]


def train(recipe, out, *extra):
    return main(["train", str(recipe), "--out", str(out), "--quiet", "--no-plots", *extra])


# --- --force never deletes what is not a run, nor before the new run is known to work ----------
def test_force_refuses_the_working_folder_and_non_runs(tabular, monkeypatch, capsys):
    monkeypatch.chdir(tabular)
    assert train("r.yaml", ".", "--force") == 2
    assert "will not delete this folder" in capsys.readouterr().err
    (tabular / "notes").mkdir()
    (tabular / "notes" / "keep.txt").write_text("mine")
    assert train("r.yaml", "notes", "--force") == 2
    assert "only replaces folders written by blocks" in capsys.readouterr().err
    assert (tabular / "notes" / "keep.txt").read_text() == "mine"
    assert (tabular / "train.csv").exists()


def test_a_failing_forced_run_leaves_the_old_run_intact(tabular, capsys):
    assert train(tabular / "r.yaml", tabular / "run", "--epochs", "1") == 0
    before = (tabular / "run" / "model.safetensors").read_bytes()
    (tabular / "broken.yaml").write_text(
        (tabular / "r.yaml").read_text().replace("train.csv", "missing.csv"))
    assert train(tabular / "broken.yaml", tabular / "run", "--force") == 2
    assert "missing.csv" in capsys.readouterr().err
    assert (tabular / "run" / "model.safetensors").read_bytes() == before


# --- preprocessing is the run's, whatever data it meets later --------------------------------------
def test_float64_models_train_and_predict(tabular):
    recipe = tabular / "r64.yaml"
    recipe.write_text((tabular / "r.yaml").read_text().replace("shape: [2]}", "shape: [2], dtype: float64}"))
    assert train(recipe, tabular / "run64", "--epochs", "2") == 0
    assert main(["predict", str(tabular / "run64"), str(tabular / "train.csv"),
                 "-o", str(tabular / "p.csv")]) == 0


def test_evaluate_on_other_data_uses_the_runs_statistics(tabular, capsys):
    assert train(tabular / "r.yaml", tabular / "run") == 0
    capsys.readouterr()
    assert main(["evaluate", str(tabular / "run"), "--json", "--trust-paths"]) == 0
    own = json.loads(capsys.readouterr().out)
    rows = read_rows(tabular / "train.csv")
    write_table(tabular / "shifted.csv", ["a", "b", "t"],
                [(float(a) + 3, float(b) * 2, t) for a, b, t in rows])
    (tabular / "shifted.yaml").write_text(
        (tabular / "r.yaml").read_text().replace("train.csv", "shifted.csv"))
    assert main(["evaluate", str(tabular / "run"), "--data", str(tabular / "shifted.yaml"),
                 "--json"]) == 0
    shifted = json.loads(capsys.readouterr().out)
    # refitting z-scores to the shifted copy would cancel the shift and repeat `own` exactly
    assert shifted["val/loss"] != pytest.approx(own["val/loss"])


def test_predict_matches_csv_columns_by_name(tabular, capsys):
    assert train(tabular / "r.yaml", tabular / "run") == 0
    rows = read_rows(tabular / "train.csv")[:6]
    write_table(tabular / "ordered.csv", ["a", "b"], [(a, b) for a, b, _ in rows])
    write_table(tabular / "shuffled.csv", ["id", "b", "t", "a"],
                [(f"s{i}", b, t, a) for i, (a, b, t) in enumerate(rows)])
    capsys.readouterr()
    assert main(["predict", str(tabular / "run"), str(tabular / "ordered.csv")]) == 0
    ordered = capsys.readouterr().out
    assert main(["predict", str(tabular / "run"), str(tabular / "shuffled.csv")]) == 0
    assert capsys.readouterr().out == ordered
    write_table(tabular / "renamed.csv", ["x", "y"], [(a, b) for a, b, _ in rows])
    assert main(["predict", str(tabular / "run"), str(tabular / "renamed.csv")]) == 2
    assert "missing column(s) 'a', 'b'" in capsys.readouterr().err


def test_predict_refuses_to_overwrite_its_input(tabular, capsys):
    assert train(tabular / "r.yaml", tabular / "run", "--epochs", "1") == 0
    before = (tabular / "train.csv").read_text()
    assert main(["predict", str(tabular / "run"), str(tabular / "train.csv"),
                 "-o", str(tabular / "train.csv")]) == 2
    assert (tabular / "train.csv").read_text() == before


def test_digits_scaling_is_part_of_the_saved_preprocessing(tmp_path):
    from sklearn.datasets import load_digits

    assert main(["train", "residual_cnn", "--out", str(tmp_path / "run"), "--quiet", "--no-plots",
                 "--epochs", "3"]) == 0
    saved = blocks.load_recipe(tmp_path / "run" / "recipe.yaml")
    assert saved.model.preprocess.scale == pytest.approx(1 / 16)
    digits = load_digits()
    model = blocks.load(tmp_path / "run")
    # raw 0..16 pixels, as a user has them (numpy float64): the model scales them itself
    accuracy = (model.predict(digits.data[:300]) == torch.as_tensor(digits.target[:300])).float().mean()
    assert accuracy > 0.8


def test_csv_with_a_trailing_blank_line_and_a_bad_cell(tabular, capsys):
    with open(tabular / "train.csv", "a") as handle:
        handle.write("\n\n")
    assert train(tabular / "r.yaml", tabular / "run", "--epochs", "1") == 0
    with open(tabular / "train.csv", "a") as handle:
        handle.write("1.0,oops,1\n")
    assert train(tabular / "r.yaml", tabular / "run2", "--epochs", "1") == 2
    assert "column 'b': 'oops' is not a number" in capsys.readouterr().err


def test_npz_with_mismatched_or_broken_arrays(tmp_path, capsys):
    np.savez(tmp_path / "d.npz", x=np.zeros((10, 2), np.float32), y=np.zeros(14, np.int64))
    (tmp_path / "r.yaml").write_text(
        "model: {input: {shape: [2]}, head: {type: softmax, classes: 2}}\n"
        "data: {npz: {path: d.npz}}\ntrain: {epochs: 1}\n")
    assert train(tmp_path / "r.yaml", tmp_path / "run") == 2
    assert "10 samples of features but 14 targets" in capsys.readouterr().err
    (tmp_path / "d.npz").write_bytes(b"not a zip archive")
    assert train(tmp_path / "r.yaml", tmp_path / "run") == 2
    assert "cannot read d.npz" in capsys.readouterr().err


# --- trainer ---------------------------------------------------------------------------------------
def test_zero_class_weights_do_not_make_the_loss_nan():
    spec = linear_spec({"type": "softmax", "classes": 3, "class_weights": [0, 1, 1]})
    x, _ = toy_data(8)
    y = torch.zeros(8, dtype=torch.long)  # every sample in the weight-0 class
    trainer = Trainer(blocks.build(spec, seed=0), {"epochs": 1, "batch_size": 4}, quiet=True)
    history = trainer.fit((x, y))
    assert history.last["train/loss"] == 0.0
    with pytest.raises(ValueError, match="all zero"):
        linear_spec({"type": "softmax", "classes": 3, "class_weights": [0, 0, 0]})


def test_evaluating_a_dataset_leaves_training_unchanged():
    x, y = toy_data(64, features=6)

    def run(evaluate_first: bool):
        trainer = Trainer(blocks.build(mlp_spec(), seed=0), {"epochs": 2, "batch_size": 16}, quiet=True)
        if evaluate_first:
            trainer.evaluate(TensorDataset(x, y))
        trainer.fit((x, y))
        return trainer.model.state_dict()

    plain, evaluated = run(False), run(True)
    assert all(torch.equal(plain[k], evaluated[k]) for k in plain)


def test_targets_are_checked_in_evaluate_and_for_datasets():
    x, y = toy_data(16)
    trainer = Trainer(blocks.build(linear_spec(), seed=0), {"epochs": 1, "batch_size": 8}, quiet=True)
    with pytest.raises(TrainingError, match="sample 0"):
        trainer.evaluate((x, torch.full((16,), 0.5)))
    bad = y.clone()
    bad[3] = 7
    with pytest.raises(TrainingError, match="has 7"):
        trainer.fit(TensorDataset(x, bad))


def test_resume_with_a_changed_model_or_optimizer_is_a_clear_error(tabular, capsys):
    assert train(tabular / "r.yaml", tabular / "run", "--epochs", "2") == 0
    text = (tabular / "r.yaml").read_text()
    (tabular / "wider.yaml").write_text(text.replace(
        "input: {shape: [2]}", "input: {shape: [2]}\n  backbone: [{type: linear, out_features: 8}]"))
    assert train(tabular / "wider.yaml", tabular / "run", "--resume") == 2
    assert "does not fit this model or optimizer" in capsys.readouterr().err
    (tabular / "sgd.yaml").write_text(text.replace("type: adam", "type: sgd"))
    assert train(tabular / "sgd.yaml", tabular / "run", "--resume") == 2
    assert "trained with optimizer 'adam'" in capsys.readouterr().err


def test_early_stopping_metric_is_checked_before_training():
    x, y = toy_data(16)
    model = blocks.build(linear_spec(), seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = Trainer(model, {"epochs": 3, "early_stopping": {"metric": "val/loss"}}, quiet=True)
    with pytest.raises(TrainingError, match="needs validation data"):
        trainer.fit((x, y))
    trainer = Trainer(model, {"epochs": 3, "early_stopping": {"metric": "val/acuracy"}}, quiet=True)
    with pytest.raises(TrainingError, match="not a metric blocks records"):
        trainer.fit((x, y), (x, y))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_torch_block_shape_inference_runs_in_eval_mode():
    spec = blocks.ModelSpec(input={"shape": [5]},
                            backbone=[{"type": "torch", "layer": "BatchNorm1d",
                                       "kwargs": {"num_features": 5}}],
                            head={"type": "sigmoid"})
    assert spec.infer_shapes().features == (5,)


def test_save_drops_a_legacy_preprocess_file_it_has_absorbed(tmp_path):
    (tmp_path / "preprocess.json").write_text("{}")
    blocks.save(blocks.build(linear_spec(), seed=0), tmp_path)
    assert not (tmp_path / "preprocess.json").exists()


def test_load_leaves_the_global_rng_alone(tmp_path):
    blocks.save(blocks.build(mlp_spec(), seed=0), tmp_path)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    blocks.load(tmp_path)
    assert torch.equal(torch.rand(3), expected)
