"""The issue's test: a 2-parameter sweep of 8 trials with pruning on the digits data, in two
processes sharing one SQLite study, finds a trial better than the default recipe's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import blocks

optuna = pytest.importorskip("optuna")

RECIPE = Path(__file__).with_name("digits_mlp.yaml")
# `blocks sweep ...` once both workers have imported what they need: on a busy machine one
# worker's imports could otherwise outlast the other's whole sweep
WORKER = """
import sys, time, pathlib
import optuna, sklearn.datasets, torch
import blocks.cli, blocks.sweeps.study
ready = pathlib.Path(sys.argv[1])
(ready / sys.argv[2]).touch()
while len(list(ready.iterdir())) < 2:
    time.sleep(0.01)
sys.exit(blocks.cli.main(sys.argv[3:]))
"""


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_processes_share_one_study_and_beat_the_default_recipe(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("train.optimizer.lr: {log_uniform: [1e-3, 1.0]}\n"
                     "model.backbone[0].out_features: {choice: [16, 64]}\n")
    out, ready = tmp_path / "sweep", tmp_path / "ready"
    ready.mkdir()
    args = ["sweep", str(RECIPE), "--space", str(space), "--trials", "8", "--out", str(out),
            "--pruner", "median", "--no-plot", "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(ready), str(i), *args], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i in range(2)]
    default = blocks.run_recipe(RECIPE, tmp_path / "default", plots=False)  # meanwhile
    for worker in workers:
        _, err = worker.communicate(timeout=240)
        assert worker.returncode == 0, err

    study = optuna.load_study(study_name="sweep", storage=f"sqlite:///{out / 'study.db'}")
    trials = study.get_trials()
    states = optuna.trial.TrialState
    # 8 in all (a race between the workers' last checks may start a 9th), none left running
    assert 8 <= len(trials) <= 9
    assert all(t.state in (states.COMPLETE, states.PRUNED) for t in trials)
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    shown = [(t.number, t.state.name, t.value, t.user_attrs["worker"]["pid"]) for t in trials]
    assert len({t.user_attrs["worker"]["pid"] for t in trials}) == 2, shown  # both worked
    assert {p.name for p in (out / "trials").iterdir()} == {
        f"trial-{t.number:04d}" for t in trials}
    for t in trials:  # pruned ones stopped early; the others trained every epoch
        epochs = max(t.intermediate_values)
        assert epochs < 3 if t.state == states.PRUNED else epochs == 3

    baseline = default.info["final"]["val/accuracy"]
    assert study.best_value > baseline + 0.2, (baseline, shown)
    best = blocks.load(out / "best")  # the best run, ready for `blocks export`
    assert (out / "best").resolve() == (out / "trials" / f"trial-{study.best_trial.number:04d}")
    assert best.spec.backbone[0].out_features == study.best_params[
        "model.backbone[0].out_features"]
