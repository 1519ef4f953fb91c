"""Shared pieces of the distributed tests: a tiny model, data, and a launcher for N gloo ranks.

`ddp_worker.py` (one process per rank) and the tests (single-process references) build exactly
the same model and data from these helpers.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

import blocks
from blocks.spec.train import TrainSpec

HERE = Path(__file__).resolve().parent
WORKER = HERE / "ddp_worker.py"
MODEL = {"name": "tiny-mlp", "input": {"shape": [4]},
         "backbone": [{"type": "linear", "out_features": 8}, {"type": "relu"}],
         "head": {"type": "softmax", "classes": 3}}


# two heads: class-weighted softmax (the loss normaliser is a weight total, not a count) and a
# 2-label sigmoid (metrics with per-label counts)
MULTIHEAD = {**MODEL, "name": "tiny-multihead", "head": None,
             "heads": {"kind": {"type": "softmax", "classes": 3, "class_weights": [1.0, 2.5, 0.5]},
                       "tags": {"type": "sigmoid", "classes": 2, "loss_weight": 0.5}}}


# several inputs: a dict of tensors keyed by input name is sharded like one tensor
MULTIINPUT = {"name": "tiny-multi-input", "backbone": MODEL["backbone"], "head": MODEL["head"],
              "inputs": {"first": {"kind": "numeric", "features": 2, "standardize": False},
                         "second": {"kind": "numeric", "features": 2, "standardize": False}},
              "combine": {"type": "gated", "dim": 4}}


def make_model(kind: str = "mlp") -> blocks.BlocksModel:
    spec = {"multihead": MULTIHEAD, "multiinput": MULTIINPUT}.get(kind, MODEL)
    return blocks.build(blocks.ModelSpec.model_validate({k: v for k, v in spec.items() if v is not None}),
                        device="cpu", seed=0)


def make_data(n: int, seed: int, kind: str = "mlp") -> tuple[torch.Tensor, torch.Tensor | dict]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()  # learnable, 3 classes
    if kind == "multiinput":
        return {"first": x[:, :2], "second": x[:, 2:]}, y
    if kind == "multihead":
        return x, {"kind": y, "tags": torch.stack([x[:, 2] > 0, x[:, 3] > 0.3], dim=1).float()}
    return x, y


def make_spec(cfg: dict) -> TrainSpec:
    return TrainSpec.model_validate({
        "epochs": cfg["epochs"], "batch_size": cfg["batch_size"], "accumulate": cfg.get("accumulate", 1),
        "optimizer": {"type": "adam", "lr": 0.01}, "seed": 0, "device": "cpu",
        "drop_last": cfg.get("drop_last", False),
        **{key: cfg[key] for key in ("freeze", "unfreeze_at_epoch") if key in cfg}})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(cfg: dict, out: Path, *, world: int = 2, timeout: float = 60.0,
           env_extra: dict | None = None) -> list[subprocess.CompletedProcess]:
    """Run `ddp_worker.py` as `world` gloo ranks (torchrun's environment, set by hand); every
    rank is killed at `timeout` so a hang fails the test instead of blocking it."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg))
    port = free_port()
    procs = []
    for rank in range(world):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                   LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                   OMP_NUM_THREADS="1", **(env_extra or {}))
        procs.append(subprocess.Popen([sys.executable, str(WORKER), str(out)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for rank, proc in enumerate(procs):
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise AssertionError(f"rank {rank} still running after {timeout}s: a hang") from None
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    return results
