"""Distributed training (issue #6): 2 gloo ranks on CPU give the single-process numbers exactly.

`batch_size` is the global batch size: every rank draws the same permutation, takes a
contiguous share of each global batch, divides its loss sum by the all-reduced global
normaliser, and DDP sums the gradients, so weights, losses and accuracies match a single
process over the same batches, also for a last batch that does not divide by the world size
(or leaves a rank with nothing). Launches are few and small: the machine has 2 shared cores.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ddp_common import launch, make_data, make_model, make_spec

from blocks.train import distributed as dist
from blocks.train.batches import TensorBatches
from blocks.train.checkpoint import load_checkpoint
from blocks.train.trainer import CHECKPOINT, Trainer

TOL = 1e-6
# name -> config; n_train vs batch_size 8 x 2 ranks: 37 leaves a last global batch of 5 (3 + 2),
# 33 leaves 1 (1 + 0: rank 1's share is empty), with accumulation across uneven batches.
RUNS = {
    "uneven": {"n_train": 37, "n_val": 11, "batch_size": 8, "epochs": 3},
    "empty_share_accumulate": {"n_train": 33, "n_val": 5, "batch_size": 8, "epochs": 3, "accumulate": 2},
    "drop_last": {"n_train": 37, "n_val": 11, "batch_size": 8, "epochs": 2, "drop_last": True},
    # a Dataset (not tensors) is sharded by a batch sampler into the same global batches
    "dataset": {"n_train": 37, "n_val": 11, "batch_size": 8, "epochs": 2, "as_dataset": True},
    # two heads, class weights (a float normaliser) and a sigmoid head (summed F1 counts)
    "multihead": {"n_train": 29, "n_val": 7, "batch_size": 6, "epochs": 2, "accumulate": 2,
                  "model": "multihead"},
    # several inputs (a dict of tensors), uneven shares and accumulation
    "multiinput": {"n_train": 33, "n_val": 7, "batch_size": 8, "epochs": 2, "accumulate": 2,
                   "model": "multiinput"},
    # fine-tuning: the head alone in epoch 1, then DDP is re-wrapped around everything
    "unfreeze": {"n_train": 37, "n_val": 11, "batch_size": 8, "epochs": 3, "freeze": ["backbone"],
                 "unfreeze_at_epoch": 2},
}


def single(cfg: dict, *, run_dir: Path | None = None, resume: bool = False):
    kind = cfg.get("model", "mlp")
    model = make_model(kind)
    trainer = Trainer(model, make_spec(cfg), run_dir=run_dir, quiet=True, distributed=False)
    history = trainer.fit(make_data(cfg["n_train"], 1, kind), make_data(cfg["n_val"], 2, kind),
                          resume=resume)
    return model.state_dict(), history.to_list()


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


# --- no processes: sharding -----------------------------------------------------------------------
@pytest.mark.parametrize("n,world", [(5, 2), (1, 2), (8, 3), (2, 4), (0, 2)])
def test_shard_bounds_partition(n, world):
    bounds = [dist.shard_bounds(n, r, world) for r in range(world)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
    sizes = [hi - lo for lo, hi in bounds]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("drop_last", [False, True])
def test_rank_shares_make_up_the_single_process_batches(drop_last):
    x, y = torch.arange(23.0).unsqueeze(1), torch.arange(23)
    whole = list(TensorBatches(x, y, 8, shuffle=True, drop_last=drop_last,
                               generator=torch.Generator().manual_seed(3)))
    shares = [list(TensorBatches(x, y, 8, shuffle=True, drop_last=drop_last,
                                 generator=torch.Generator().manual_seed(3), shard=(r, 3)))
              for r in range(3)]
    assert all(len(s) == len(whole) for s in shares)  # every rank steps the same number of times
    for b, (bx, by) in enumerate(whole):
        assert torch.equal(torch.cat([s[b][0] for s in shares]), bx)
        assert torch.equal(torch.cat([s[b][1] for s in shares]), by)


def test_dataset_sampler_shares_cover_each_sample_once():
    batches = [list(dist.GlobalBatchSampler(21, 8, shuffle=True, drop_last=False,
                                            generator=torch.Generator().manual_seed(0), shard=(r, 2)))
               for r in range(2)]
    seen = sorted(i for rank in batches for batch in rank for i in batch)
    assert seen == list(range(21)) and len(batches[0]) == len(batches[1]) == 3


def test_alone_without_a_process_group(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR"):
        monkeypatch.delenv(var, raising=False)
    assert Trainer(make_model(), make_spec(RUNS["uneven"]), quiet=True).dist is None
    with pytest.raises(dist.DistributedError, match="torchrun"):
        Trainer(make_model(), make_spec(RUNS["uneven"]), quiet=True, distributed=True)


# --- 2 gloo ranks ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """One launch of 2 ranks training every run in RUNS, plus a resume of a single-process
    checkpoint and a checkpointed run for the reverse direction."""
    root = tmp_path_factory.mktemp("ddp")
    single_dir = root / "single-ckpt"
    single_dir.mkdir()
    single({**RUNS["uneven"], "epochs": 2}, run_dir=single_dir)
    (root / "ddp-ckpt").mkdir()
    runs = [{"name": name, **cfg} for name, cfg in RUNS.items()]
    runs[0]["run_dir"] = str(root / "ddp-ckpt")
    runs.append({"name": "resume_single", **RUNS["uneven"], "epochs": 4, "resume": True,
                 "run_dir": str(single_dir)})
    results = launch({"runs": runs}, root, timeout=120)
    for rank, r in enumerate(results):
        assert r.returncode == 0, f"rank {rank} failed:\n{r.stderr[-3000:]}"
    return root


def ddp_result(root: Path, name: str) -> tuple[list[dict], list[dict]]:
    weights = [torch.load(root / name / f"weights-{r}.pt") for r in range(2)]
    return weights, json.loads((root / name / "history.json").read_text())


@pytest.mark.multiprocess
@pytest.mark.slow
@pytest.mark.parametrize("name", list(RUNS))
def test_two_ranks_end_with_the_single_process_weights(two_ranks, name):
    weights, _ = ddp_result(two_ranks, name)
    reference, _ = single(RUNS[name])
    assert max_diff(weights[0], weights[1]) == 0.0  # DDP keeps the replicas identical
    assert max_diff(weights[0], reference) < TOL
    assert max_diff(weights[0], make_model(RUNS[name].get("model", "mlp")).state_dict()) > 1e-3


@pytest.mark.multiprocess
@pytest.mark.slow
@pytest.mark.parametrize("name", list(RUNS))
def test_two_ranks_report_the_single_process_epoch_metrics(two_ranks, name):
    _, history = ddp_result(two_ranks, name)
    _, reference = single(RUNS[name])
    assert len(history) == len(reference)
    for got, want in zip(history, reference, strict=True):
        metrics = [k for k in want if "/" in k]  # loss, accuracy (+ per head, F1, per label)
        assert sorted(metrics) == sorted(k for k in got if "/" in k)
        assert {"train/loss", "val/loss"} <= set(metrics)
        for key in metrics:
            assert got[key] == pytest.approx(want[key], abs=TOL), (got["epoch"], key)
            if "accuracy" in key:
                assert got[key] == want[key], (got["epoch"], key)  # counts, summed over ranks


@pytest.mark.multiprocess
@pytest.mark.slow
def test_two_rank_checkpoint_resumes_in_one_process(two_ranks, tmp_path):
    model_state, states, _ = load_checkpoint(two_ranks / "ddp-ckpt" / CHECKPOINT)
    assert not any(k.startswith("module.") for k in model_state)  # DDP's wrapper is not saved
    assert len(states["rng"]["ranks"]) == 2  # each rank's RNG, for an exact distributed resume
    run_dir = tmp_path / "run"
    shutil.copytree(two_ranks / "ddp-ckpt", run_dir)
    resumed, history = single({**RUNS["uneven"], "epochs": 5}, run_dir=run_dir, resume=True)
    straight, reference = single({**RUNS["uneven"], "epochs": 5})
    assert max_diff(resumed, straight) < TOL
    assert history[-1]["train/loss"] == pytest.approx(reference[-1]["train/loss"], abs=TOL)


@pytest.mark.multiprocess
@pytest.mark.slow
def test_single_process_checkpoint_resumes_on_two_ranks(two_ranks):
    weights, history = ddp_result(two_ranks, "resume_single")
    straight, reference = single({**RUNS["uneven"], "epochs": 4})
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert max_diff(weights[0], straight) < TOL
    assert history[-1]["val/loss"] == pytest.approx(reference[-1]["val/loss"], abs=TOL)


@pytest.mark.multiprocess
@pytest.mark.slow
def test_a_crashed_rank_ends_the_run_with_a_clear_error(tmp_path):
    cfg = {"name": "crash", **RUNS["uneven"], "epochs": 20, "crash_rank": 1, "crash_epoch": 1}
    results = launch({"runs": [cfg]}, tmp_path, timeout=90, env_extra={dist.TIMEOUT_ENV: "30"})
    assert results[1].returncode == 3  # the hard crash
    assert results[0].returncode == 1, results[0].stderr[-3000:]
    message = results[0].stderr.strip().splitlines()[-1]
    assert message.startswith("DistributedError: rank 0 of 2 lost contact with the other ranks")
    assert "another rank probably failed" in message


RECIPE = """\
model:
  name: tiny-ddp
  input: {shape: [4]}
  backbone:
    - {type: linear, out_features: 8}
    - relu
  head: {type: softmax, classes: 3}
data: {synthetic: {samples: 45}, val_fraction: 0.2, seed: 0}
train: {epochs: 2, batch_size: 8, device: cpu, optimizer: {type: adam, lr: 0.01}}
"""


@pytest.mark.multiprocess
@pytest.mark.slow
def test_torchrun_cli_trains_like_one_process(tmp_path):
    from safetensors.torch import load_file

    from blocks.cli import main

    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(RECIPE)
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "blocks", "train", str(recipe),
           "--out", str(tmp_path / "ddp")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("training tiny-ddp") == 1  # rank 0 alone prints
    assert main(["train", str(recipe), "--out", str(tmp_path / "one"), "-q"]) == 0
    got, want = load_file(tmp_path / "ddp" / "model.safetensors"), load_file(tmp_path / "one" / "model.safetensors")
    assert max_diff(got, want) < TOL
    info = json.loads((tmp_path / "ddp" / "run.json").read_text())
    assert info["world_size"] == 2
    one = json.loads((tmp_path / "one" / "run.json").read_text())
    assert info["final"]["val/accuracy"] == one["final"]["val/accuracy"]
    assert info["final"]["train/loss"] == pytest.approx(one["final"]["train/loss"], abs=TOL)
