"""Sweeps that run: trials as run folders, pruning, failures recorded, resuming, the best run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import blocks
from blocks.cli import EXIT_BAD_INPUT, main

optuna = pytest.importorskip("optuna")

RECIPE = Path(__file__).with_name("digits_mlp.yaml")
LR = {"train.optimizer.lr": {"log_uniform": [1e-3, 1.0]}}


def rows(out: Path) -> list[dict]:
    return json.loads((out / "sweep.json").read_text())["trials"]


def test_a_trial_whose_metric_is_bad_is_pruned_at_an_early_epoch(tmp_path):
    out = tmp_path / "sweep"
    good = [{"train.optimizer.lr": lr} for lr in (0.5, 0.4, 0.3)]
    bad = {"train.optimizer.lr": 1e-3}
    result = blocks.sweep(RECIPE, LR, trials=4, out=out, enqueue=[*good, bad], pruner="median",
                          plot=False)
    states = [(r["trial"], r["state"], r["epochs"]) for r in rows(out)]
    # the median pruner starts after 3 finished trials and from epoch 2
    assert states == [(0, "complete", 3), (1, "complete", 3), (2, "complete", 3), (3, "pruned", 2)]
    pruned = out / "trials" / "trial-0003"
    info = json.loads((pruned / "run.json").read_text())
    assert info["status"] == "pruned" and info["epoch"] == 2 and info["trial"] == 3
    assert len(json.loads((pruned / "history.json").read_text())) == 2  # the epochs it trained
    assert not (pruned / "model.safetensors").exists()
    assert result.info["counts"] == {"complete": 3, "pruned": 1}
    # each finished trial is a normal run folder, with the sweep's values in its recipe
    finished = out / "trials" / "trial-0000"
    assert blocks.load_recipe(finished / "recipe.yaml").train.optimizer.lr == 0.5
    assert json.loads((finished / "run.json").read_text())["sweep"]["params"] == good[0]


def test_a_trial_is_never_pruned_after_its_last_epoch(tmp_path):
    recipe = tmp_path / "two_epochs.yaml"  # the median pruner could first prune at epoch 2
    recipe.write_text(RECIPE.read_text().replace("epochs: 3", "epochs: 2"))
    enqueue = [{"train.optimizer.lr": lr} for lr in (0.5, 0.4, 0.3, 1e-3)]
    blocks.sweep(recipe, LR, trials=4, out=tmp_path / "s", enqueue=enqueue, plot=False)
    assert [(r["state"], r["epochs"]) for r in rows(tmp_path / "s")] == [("complete", 2)] * 4


def test_failed_trials_are_recorded_and_the_sweep_goes_on(tmp_path, capsys):
    out = tmp_path / "sweep"
    space = {"train.optimizer.lr": {"log_uniform": [1e-3, 1e9]}}
    result = blocks.sweep(RECIPE, space, trials=2, out=out, pruner="none", quiet=False,
                          enqueue=[{"train.optimizer.lr": 1e9}, {"train.optimizer.lr": 0.3}])
    first, second = rows(out)
    assert first["state"] == "fail" and second["state"] == "complete"
    assert first["error"].startswith("TrainingError: the training loss became")
    assert json.loads((out / "trials/trial-0000/run.json").read_text())["status"] == "failed"
    assert result.best["trial"] == 1
    printed = capsys.readouterr().out
    assert "trial 0: train.optimizer.lr=1e+09: failed: TrainingError: the training loss" in printed
    assert os.readlink(out / "best") == "trials/trial-0001"
    pytest.importorskip("matplotlib")
    assert (out / "trials.png").read_bytes()[:4] == b"\x89PNG"
    model = blocks.load(out / "best")  # the best run folder, as `blocks export` reads it
    assert model.spec.name == "digits-mlp"


def test_started_again_the_study_continues_its_numbering(tmp_path, capsys):
    out, space = tmp_path / "sweep", tmp_path / "space.yaml"
    space.write_text("train.optimizer.lr: {log_uniform: [1e-2, 1.0]}\n")
    args = ["sweep", str(RECIPE), "--space", str(space), "--out", str(out), "--no-plot", "-q"]
    assert main([*args, "--trials", "2"]) == 0
    assert main([*args, "--trials", "2"]) == 0  # done already: no new trial
    assert [r["trial"] for r in rows(out)] == [0, 1]
    assert main([*args, "--trials", "3"]) == 0
    assert [r["trial"] for r in rows(out)] == [0, 1, 2]
    assert sorted(p.name for p in (out / "trials").iterdir()) == [
        "trial-0000", "trial-0001", "trial-0002"]
    printed = capsys.readouterr().out
    assert "best: trial" in printed and f"blocks export {out / 'best'}" in printed
    # another space on the same study is refused, located at the flag
    space.write_text("train.optimizer.lr: {log_uniform: [1e-3, 1.0]}\n")
    assert main([*args, "--trials", "4"]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err.startswith(
        "error: --study: study 'sweep' was started with another space")


def test_a_folder_that_is_not_a_sweep_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(blocks.SpecError, match="is not empty and holds no sweep"):
        blocks.sweep(RECIPE, LR, trials=1, out=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.slow
@pytest.mark.multiprocess
def test_a_killed_sweep_resumes_and_reruns_the_killed_trial(tmp_path):
    recipe = tmp_path / "slow.yaml"  # trials long enough to be killed in the middle of one
    recipe.write_text(RECIPE.read_text().replace("epochs: 3", "epochs: 150"))
    space = tmp_path / "space.yaml"
    space.write_text("train.optimizer.lr: {log_uniform: [1e-2, 1.0]}\n")
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "blocks", "sweep", str(recipe), "--space", str(space),
           "--trials", "2", "--out", str(out), "--no-plot", "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    history = out / "trials" / "trial-0000" / "history.json"
    deadline = time.monotonic() + 120
    while not history.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert history.exists()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    killed, retry, fresh = rows(out)
    assert killed["state"] == "killed" and 0 < killed["epochs"] < 150
    assert retry["state"] == "complete" and retry["retry_of"] == 0
    assert retry["params"] == killed["params"]  # re-run with the same values
    assert fresh["state"] == "complete" and fresh["trial"] == 2
    assert json.loads((out / "trials/trial-0000/run.json").read_text())["status"] == "killed"


def test_bad_arguments_are_named_and_a_timeout_stops_new_trials(tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text("train.optimizer.lr: {log_uniform: [1e-2, 1.0]}\n")
    args = ["sweep", str(RECIPE), "--space", str(space), "--out", str(tmp_path / "s")]
    assert main([*args, "--trials", "0"]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err == "error: --trials: must be a positive integer, got 0\n"
    assert main([*args, "--trials", "3", "--storage", "nosuchdb://x"]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err.startswith(
        "error: --storage: cannot open the study storage nosuchdb://x: ")
    result = blocks.sweep(RECIPE, space, trials=3, out=tmp_path / "t", timeout=0, plot=False)
    assert result.info["counts"] == {} and result.best is None and result.best_run is None
    assert main(["sweep", str(RECIPE), "--space", str(space), "--out", str(tmp_path / "t"),
                 "--trials", "3", "--timeout", "0"]) == 0
    assert "no trial finished; nothing to export" in capsys.readouterr().out


def test_a_study_is_resumed_only_with_the_recipe_it_started_with(tmp_path, capsys):
    recipe, space = tmp_path / "r.yaml", tmp_path / "space.yaml"
    recipe.write_text(RECIPE.read_text())
    space.write_text("train.optimizer.lr: {log_uniform: [1e-2, 1.0]}\n")
    args = ["sweep", str(recipe), "--space", str(space), "--out", str(tmp_path / "s"), "-q",
            "--no-plot", "--trials", "1"]
    assert main(args) == 0
    recipe.write_text(RECIPE.read_text().replace("out_features: 32", "out_features: 48"))
    assert main(args) == EXIT_BAD_INPUT
    assert capsys.readouterr().err == (
        "error: --study: study 's' was started with another recipe (its keys changed since); "
        "resume it with the same one, or pass --study with a new name\n")
    # a new study name in the same folder would reuse its trial folders' names: refused
    assert main([*args, "--study", "other"]) == EXIT_BAD_INPUT
    assert "holds the trials of another study" in capsys.readouterr().err
