"""Run folders as untrusted, shared places: what `--force` may delete, locks, damaged files.

A folder is a blocks run when its `run.json` carries blocks' marker; `--force` deletes only the
files a run consists of, never a user's file; one process writes a folder at a time; a changed
byte in saved weights is refused everywhere; paths stored in a run are not followed out of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import blocks
from blocks.cli import main

TINY = """\
model:
  input: {shape: [4]}
  backbone: [{type: linear, out_features: 8}, relu]
  head: {type: softmax, classes: 3}
data: {synthetic: {samples: 96}}
train: {epochs: EPOCHS, batch_size: 16}
"""


def recipe(tmp_path: Path, epochs: int = 1) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY.replace("EPOCHS", str(epochs)))
    return path


def train(recipe_path: Path, out: Path, *extra: str) -> int:
    return main(["train", str(recipe_path), "--out", str(out), "--quiet", "--no-plots", *extra])


# --- --force deletes only what blocks wrote -----------------------------------------------------
@pytest.mark.parametrize("lookalike", ["recipe.yaml", "history.json", "checkpoint.safetensors"])
def test_force_never_deletes_a_users_file_beside_run_lookalikes(tmp_path, capsys, lookalike):
    project = tmp_path / "project"
    project.mkdir()
    (project / lookalike).write_text("mine")
    (project / "important.txt").write_text("keep me")
    assert train(recipe(tmp_path), project, "--force") == 2
    assert "only replaces folders written by blocks" in capsys.readouterr().err
    assert (project / "important.txt").read_text() == "keep me"
    assert (project / lookalike).read_text() == "mine"


def test_force_refuses_a_run_folder_holding_a_users_file(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(recipe(tmp_path), out) == 0
    (out / "notes.txt").write_text("my notes")
    assert train(recipe(tmp_path), out, "--force") == 2
    err = capsys.readouterr().err
    assert "will not delete files that blocks did not write: notes.txt" in err
    assert (out / "notes.txt").read_text() == "my notes"
    (out / "notes.txt").unlink()
    assert train(recipe(tmp_path), out, "--force") == 0  # a pure run folder is replaced


def test_force_on_a_symlink_is_a_clear_error(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(recipe(tmp_path), out) == 0
    link = tmp_path / "latest"
    link.symlink_to(out)
    assert train(recipe(tmp_path), link, "--force") == 2
    assert "will not replace a symbolic link" in capsys.readouterr().err
    assert (out / "model.safetensors").exists()


def test_a_partly_deleted_run_folder_can_be_replaced(tmp_path):
    out = tmp_path / "run"
    assert train(recipe(tmp_path), out) == 0
    (out / "model.safetensors").unlink()
    (out / "history.json").unlink()
    assert train(recipe(tmp_path), out, "--force") == 0
    assert blocks.load(out) is not None


def test_recipe_and_marker_are_written_before_training(tmp_path):
    out = tmp_path / "run"
    seen = {}

    def spy(trainer, record):
        seen.update(info=json.loads((out / "run.json").read_text()),
                    recipe=(out / "recipe.yaml").exists(), lock=(out / ".lock").exists())

    from blocks.train import trainer as trainer_module

    original = trainer_module.Trainer.__init__

    def with_callback(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.callbacks.append(spy)

    trainer_module.Trainer.__init__ = with_callback
    try:
        assert train(recipe(tmp_path), out) == 0
    finally:
        trainer_module.Trainer.__init__ = original
    assert seen["info"]["status"] == "running" and seen["info"]["format"] == "blocks-run/1"
    assert seen["recipe"] and seen["lock"]
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "finished" and not (out / ".lock").exists()


def test_stray_temporary_files_are_cleaned_on_resume(tmp_path):
    out = tmp_path / "run"
    assert train(recipe(tmp_path, epochs=1), out) == 0
    (out / ".checkpoint.safetensors.abc123.tmp").write_bytes(b"half a checkpoint")
    assert train(recipe(tmp_path, epochs=2), out, "--resume") == 0
    assert not list(out.glob(".*.tmp"))


# --- one writer per folder ------------------------------------------------------------------------
def test_a_live_lock_refuses_a_second_writer_and_a_stale_one_is_taken_over(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(recipe(tmp_path), out) == 0
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".lock").write_text(json.dumps({"pid": sleeper.pid, "host": os.uname().nodename}))
        assert train(recipe(tmp_path), out, "--force") == 2
        assert f"in use by another blocks process (pid {sleeper.pid}" in capsys.readouterr().err
        assert train(recipe(tmp_path, epochs=2), out, "--resume") == 2
        assert f"pid {sleeper.pid}" in capsys.readouterr().err
    finally:
        sleeper.kill()
        sleeper.wait()
    assert train(recipe(tmp_path, epochs=2), out, "--resume") == 0  # its holder is gone
    assert not (out / ".lock").exists()


@pytest.mark.slow
@pytest.mark.parametrize("force", [False, True])
def test_two_concurrent_trainings_into_one_folder(tmp_path, force):
    out = tmp_path / "run"
    path = recipe(tmp_path, epochs=40)  # long enough to outlast the second process's start-up
    path.write_text(path.read_text().replace("samples: 96", "samples: 4000"))
    command = [sys.executable, "-m", "blocks", "train", str(path), "--out", str(out), "--quiet",
               "--no-plots"]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out / ".lock").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    second = subprocess.run(command + (["--force"] if force else []), capture_output=True,
                            text=True, timeout=120)
    _, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err
    assert second.returncode == 2
    assert f"pid {first.pid}" in second.stderr  # the lock was there: named, not overwritten
    assert json.loads((out / "run.json").read_text())["status"] == "finished"
    assert len(json.loads((out / "history.json").read_text())) == 40
    blocks.load(out)


# --- damaged weights are refused -----------------------------------------------------------------
def _flip(path: Path, count: int = 100) -> None:
    data = bytearray(path.read_bytes())
    header = int.from_bytes(data[:8], "little") + 8
    rng = np.random.default_rng(0)
    for i in rng.choice(np.arange(header, len(data)), size=min(count, len(data) - header),
                        replace=False):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def test_a_flipped_byte_is_refused_by_load_evaluate_predict_and_resume(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(recipe(tmp_path), out) == 0
    np.savez(tmp_path / "x.npz", x=np.zeros((3, 4), dtype=np.float32))
    _flip(out / "model.safetensors", 1)
    with pytest.raises(blocks.BlocksError, match="damaged: its tensor data does not match"):
        blocks.load(out)
    for argv in (["evaluate", str(out), "--trust-paths"],
                 ["predict", str(out), str(tmp_path / "x.npz")]):
        assert main(argv) == 2
        assert "does not match the checksum" in capsys.readouterr().err
    _flip(out / "checkpoint.safetensors", 1)
    assert train(recipe(tmp_path, epochs=2), out, "--resume") == 2
    err = capsys.readouterr().err
    assert "checkpoint.safetensors is damaged" in err and "Traceback" not in err


def test_non_finite_weights_are_refused_with_their_names(tmp_path):
    model = blocks.build(blocks.ModelSpec(input={"shape": [2]},
                                          head={"type": "softmax", "classes": 2}), seed=0)
    with torch.no_grad():
        model.head.weight[0, 0] = float("nan")
    blocks.save(model, tmp_path)
    with pytest.raises(blocks.BlocksError, match=r"non-finite values in head.weight"):
        blocks.load(tmp_path)


def test_a_pickle_in_place_of_weights_is_not_executed(tmp_path):
    model = blocks.build(blocks.ModelSpec(input={"shape": [2]},
                                          head={"type": "softmax", "classes": 2}), seed=0)
    blocks.save(model, tmp_path)
    marker = tmp_path / "pwned"
    import pickle

    class Evil:
        def __reduce__(self):
            return (Path.write_text, (marker, "executed"))

    (tmp_path / "model.safetensors").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(blocks.BlocksError, match="not a safetensors file"):
        blocks.load(tmp_path)
    assert not marker.exists()


# --- paths stored in a run folder are not followed out of it ---------------------------------------
def test_a_crafted_run_folder_does_not_read_or_print_an_outside_secret(tmp_path, capsys):
    out = tmp_path / "run"
    (tmp_path / "t.csv").write_text("a,b,y\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(30)))
    path = tmp_path / "r.yaml"
    path.write_text("model: {input: {shape: [2]}, head: {type: softmax, classes: 2}}\n"
                    "data: {csv: {path: t.csv, target: y}}\ntrain: {epochs: 1}\n")
    assert train(path, out) == 0
    secret = tmp_path / "secret.csv"
    secret.write_text("root:hunter2-XYZ:0:0\n1,2\n")
    assert "path: ../t.csv," in (out / "recipe.yaml").read_text()  # stored relative to the run
    text = (out / "recipe.yaml").read_text().replace("path: ../t.csv,", f"path: {secret},")
    (out / "recipe.yaml").write_text(text)
    assert main(["evaluate", str(out)]) == 2
    err = capsys.readouterr().err
    assert "outside the run folder" in err and "hunter2" not in err
    assert "records no size and checksum for it" in err
    # run.json crafted too: its record names the secret, with the checksum of other bytes
    info = json.loads((out / "run.json").read_text())
    info["data"]["csv"]["path"] = str(secret)
    info["data"]["csv"]["bytes"] = secret.stat().st_size
    (out / "run.json").write_text(json.dumps(info))
    assert main(["evaluate", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no longer has the size and checksum recorded" in err and "hunter2" not in err
    np.savez(tmp_path / "x.npz", x=np.zeros((2, 2), dtype=np.float32))
    assert main(["predict", str(out), str(tmp_path / "x.npz")]) == 0
    assert "hunter2" not in capsys.readouterr().out
    blocks.load(out)
    assert main(["evaluate", str(out), "--trust-paths"]) == 2  # named by the user: read, not echoed
    assert "hunter2" not in capsys.readouterr().err


# --- a damaged-run-folder corpus: every command exits 0 or 2, never 3 -------------------------------
def _deep(n: int) -> str:
    return "[" * n + "]" * n


CORRUPTIONS = {
    "history-not-records": ("history.json", b"[1, 2, 3]"),
    "history-object": ("history.json", b'{"epoch": 1}'),
    "history-nan-epoch": ("history.json", b'[{"epoch": NaN, "train/loss": 1.0}]'),
    "history-deep": ("history.json", _deep(100_000).encode()),
    "history-garbage": ("history.json", bytes(range(256))),
    "run-json-list": ("run.json", b"[]"),
    "run-json-types": ("run.json", b'{"format": "blocks-run/1", "status": 5, "epochs": "x", '
                                   b'"final": "nope", "best_epoch": -4}'),
    "run-json-garbage": ("run.json", b"\xff\xfe\x00garbage"),
    "recipe-garbage": ("recipe.yaml", b"\x00\x01\x02 model: [\n"),
    "recipe-python-tag": ("recipe.yaml", b"model: !!python/object/apply:os.system [echo pwned]\n"),
    "weights-truncated": ("model.safetensors", None),
    "weights-pickle": ("model.safetensors", b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00."),
    "weights-huge-header": ("model.safetensors", (2**60).to_bytes(8, "little") + b"{}"),
    "weights-empty": ("model.safetensors", b""),
    "checkpoint-truncated": ("checkpoint.safetensors", None),
    "checkpoint-huge-header": ("checkpoint.safetensors", (2**40).to_bytes(8, "little") + b"{"),
    "legacy-preprocess-nan": ("preprocess.json", b'{"input_shape": [4], "scale": NaN}'),
    "legacy-preprocess-list": ("preprocess.json", b"[1, 2]"),
}


def _checkpoint_meta(path: Path, change) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata())
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    meta = json.loads(metadata["meta"])
    change(meta)
    metadata["meta"] = json.dumps(meta)
    save_file(tensors, str(path), metadata=metadata)


META_EDITS = {
    "meta-no-epoch": lambda m: m.pop("epoch"),
    "meta-negative-epoch": lambda m: m.update(epoch=-4),
    "meta-history-strings": lambda m: m.update(history=["a", "b"]),
    "meta-best-list": lambda m: m.update(best=[1]),
}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("corpus")
    out = base / "run"
    assert train(recipe(base), out) == 0
    np.savez(base / "x.npz", x=np.zeros((3, 4), dtype=np.float32))
    return out


@pytest.mark.parametrize("case", [*CORRUPTIONS, *META_EDITS])
def test_damaged_run_folders_exit_0_or_2_never_3(finished_run, tmp_path, capsys, case):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    if case in META_EDITS:
        _checkpoint_meta(run / "checkpoint.safetensors", META_EDITS[case])
    else:
        name, data = CORRUPTIONS[case]
        if data is None:  # truncate
            data = (run / name).read_bytes()[: len((run / name).read_bytes()) // 2]
        (run / name).write_bytes(data)
    npz = finished_run.parent / "x.npz"
    for argv in (["report", str(run)], ["evaluate", str(run)], ["predict", str(run), str(npz)],
                 ["train", str(recipe(tmp_path, epochs=2)), "--out", str(run), "--resume",
                  "--quiet", "--no-plots"]):
        code = main(argv)
        err = capsys.readouterr().err
        assert code in (0, 2), (case, argv[0], err)
        assert "internal error" not in err and "Traceback" not in err, (case, argv[0], err)
    with contextlib.suppress(blocks.BlocksError):
        blocks.load(run)
    assert not (tmp_path / "pwned").exists()


# --- kill -9 at random moments: every folder resumes bit-identically or says what it lacks --------
KILL_RECIPE = """\
model:
  input: {shape: [8]}
  backbone: [{type: linear, out_features: 32}, relu, {type: dropout, p: 0.1}]
  head: {type: softmax, classes: 3}
data: {synthetic: {samples: 3000}}
train: {epochs: 10, batch_size: 16, device: cpu}
"""


def _tensors(path: Path) -> dict[str, bytes]:
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as handle:
        return {k: handle.get_tensor(k).tobytes() for k in handle.keys()}  # noqa: SIM118


@pytest.mark.slow
def test_kill_9_at_random_moments_leaves_resumable_folders(tmp_path):
    import random
    import signal

    path = tmp_path / "kill.yaml"
    path.write_text(KILL_RECIPE)
    command = [sys.executable, "-m", "blocks", "train", str(path), "--quiet", "--no-plots"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = tmp_path / "reference"
    process = subprocess.Popen([*command, "--out", str(reference)], env=env)
    while not (reference / ".lock").exists() and process.poll() is None:
        time.sleep(0.005)
    started = time.monotonic()
    assert process.wait(timeout=300) == 0
    duration = time.monotonic() - started  # how long training takes here, start-up excluded
    expected = _tensors(reference / "model.safetensors")
    rng = random.Random(0)
    outcomes = []
    for trial in range(20):
        out = tmp_path / f"killed{trial}"
        process = subprocess.Popen([*command, "--out", str(out)], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120  # start-up time varies with the machine's load
        while not (out / ".lock").exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.05, 0.9) * duration)  # somewhere in the training
        process.send_signal(signal.SIGKILL)
        process.wait()
        if (out / "run.json").exists() and json.loads((out / "run.json").read_text()).get(
                "status") == "finished":
            outcomes.append("finished before the kill")
            assert _tensors(out / "model.safetensors") == expected
            duration *= 0.7  # runs go quicker than the reference's (warm caches): aim earlier
            continue
        if not out.exists() or not (out / "checkpoint.safetensors").exists():
            outcomes.append("before the first checkpoint")
            if out.exists():  # recognisable: resume says why not, --force replaces it
                result = subprocess.run([*command, "--out", str(out), "--resume"], env=env,
                                        capture_output=True, text=True, timeout=300)
                assert result.returncode == 2 and "no checkpoint.safetensors" in result.stderr
                assert json.loads((out / "run.json").read_text())["status"] == "running"
            continue
        result = subprocess.run([*command, "--out", str(out), "--resume"], env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, (trial, result.stderr)
        assert _tensors(out / "model.safetensors") == expected, f"trial {trial} differs"
        assert not list(out.glob(".*.tmp")) and not (out / ".lock").exists()
        outcomes.append("resumed")
    assert outcomes.count("resumed") >= 5, outcomes  # most kills hit a running training


def test_data_paths_to_devices_or_huge_files_are_refused_before_reading(tmp_path, capsys,
                                                                         monkeypatch):
    path = tmp_path / "r.yaml"
    path.write_text("model: {input: {shape: [2]}, head: {type: softmax, classes: 2}}\n"
                    "data: {csv: {path: /dev/zero, target: y}}\n")
    assert main(["validate", str(path)]) in (0, 2)
    assert train(path, tmp_path / "run") == 2
    assert "'/dev/zero' is not a regular file" in capsys.readouterr().err
    (tmp_path / "big.csv").write_text("a,y\n" + "1,0\n" * 1000)
    monkeypatch.setenv("BLOCKS_MAX_MODEL_BYTES", "1000")
    path.write_text(path.read_text().replace("/dev/zero", "big.csv"))
    assert train(path, tmp_path / "run") == 2
    assert "reading big.csv would need" in capsys.readouterr().err


def test_a_run_folder_from_before_the_marker_is_still_replaceable(tmp_path):
    out = tmp_path / "run"
    assert train(recipe(tmp_path), out) == 0
    info = json.loads((out / "run.json").read_text())
    info.pop("format"), info.pop("status")
    (out / "run.json").write_text(json.dumps(info))  # as older blocks wrote it
    assert train(recipe(tmp_path), out, "--force") == 0
    assert json.loads((out / "run.json").read_text())["format"] == "blocks-run/1"
