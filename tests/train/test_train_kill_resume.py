"""kill -9 mid-training, then `blocks train --resume`: the finished run equals an uninterrupted
one bit for bit, with `unfreeze_at_epoch` (the kill lands after the unfreeze) and with
`compile: true`, whether the kill hits after a checkpoint or in the middle of writing one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from blocks.cli import main

RECIPE = """model:
  input: {{shape: [6]}}
  backbone: [{{type: linear, out_features: 16}}, relu, {{type: linear, out_features: 8}}, relu]
  head: {{type: softmax, classes: 3}}
data: {{synthetic: {{samples: 96}}}}
train:
  epochs: 5
  batch_size: 16
  seed: 3
  optimizer: {{type: adam, lr: 0.01}}
  freeze: [backbone.0]
  unfreeze_at_epoch: 3
  compile: {compile}
"""

# runs `blocks train`, SIGKILLing itself after (or while) writing the checkpoint of epoch KILL_AT
KILLER = textwrap.dedent("""
    import os, signal, sys
    import blocks.train.checkpoint as checkpoint
    import blocks.train.trainer as trainer
    from blocks.cli import main

    at, how = int(os.environ["KILL_AT"]), os.environ["KILL_HOW"]
    original_save, original_write = trainer.Trainer.save_checkpoint, checkpoint.save_file

    def half_written(tensors, path, metadata=None):
        original_write(tensors, path, metadata=metadata)
        with open(path, "r+b") as handle:  # the kill lands mid-file
            handle.truncate(os.path.getsize(path) // 2)
        os.kill(os.getpid(), signal.SIGKILL)

    def save(self, path=None):
        if self.epoch == at and how == "during":
            checkpoint.save_file = half_written
        written = original_save(self, path)
        if self.epoch == at and how == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return written

    trainer.Trainer.save_checkpoint = save
    sys.exit(main(sys.argv[1:]))
""")


def _hashes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def _killed_then_resumed(tmp_path: Path, compile: bool, how: str, at: int,
                         freeze: bool = True) -> None:
    recipe = tmp_path / "r.yaml"
    text = RECIPE.format(compile=str(compile).lower())
    if not freeze:
        text = text.replace("  freeze: [backbone.0]\n  unfreeze_at_epoch: 3\n", "")
    recipe.write_text(text)
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert main(["train", str(recipe), "--out", str(whole), "--quiet", "--no-plots"]) == 0
    env = {**os.environ, "KILL_AT": str(at), "KILL_HOW": how, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", KILLER, "train", str(recipe), "--out", str(split),
                           "--quiet", "--no-plots"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert not (split / "model.safetensors").exists()  # it really died before the end
    leftovers = sorted(p.name for p in split.iterdir() if p.name.endswith(".tmp"))
    assert bool(leftovers) == (how == "during")  # the half-written checkpoint, never under its name
    assert main(["train", str(recipe), "--out", str(split), "--resume", "--quiet", "--no-plots"]) == 0
    a, b = load_file(whole / "model.safetensors"), load_file(split / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not any(p.name.endswith(".tmp") for p in split.iterdir())
    assert not (split / ".lock").exists()


@pytest.mark.slow
@pytest.mark.multiprocess
@pytest.mark.parametrize("how", ["after", "during"])
def test_kill_9_after_the_unfreeze_then_resume_equals_uninterrupted(tmp_path, how):
    # after: killed right after epoch 3's checkpoint (the unfreeze happened in epoch 3);
    # during: killed while writing epoch 4's, so the resume starts from epoch 3's
    _killed_then_resumed(tmp_path, compile=False, how=how, at=3 if how == "after" else 4)


@pytest.mark.slow
@pytest.mark.multiprocess
@pytest.mark.parametrize("freeze", [False, True], ids=["whole_step", "with_unfreeze"])
def test_kill_9_with_compile_then_resume_equals_uninterrupted(tmp_path, freeze):
    # without freeze the whole step (forward, backward, optimizer) is compiled; with it, the forward
    _killed_then_resumed(tmp_path, compile=True, how="after", at=3, freeze=freeze)
