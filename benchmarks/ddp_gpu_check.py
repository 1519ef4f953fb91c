"""One-off NCCL check of distributed training (issue #6); not a test, not a `bench_*` module.

    python benchmarks/ddp_gpu_check.py [--nproc N] [--timeout S]

On a machine with CUDA: trains a tiny recipe with `torchrun --standalone --nproc_per_node=N -m
blocks train` (NCCL, one GPU per rank, fp32 then bf16) and once in a single process, and prints
PASS/FAIL lines: the NCCL run finishes, rank 0 alone writes the run folder, its fp32 weights
match the single-process run's, and the bf16 run ends with a finite loss. Exit 0 when all pass,
1 when one fails, 0 with SKIP when there is no CUDA (`--allow-cpu` runs the same flow on gloo,
to check the script itself).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

RECIPE = """\
model:
  name: ddp-gpu-check
  input: {{shape: [16]}}
  backbone:
    - {{type: linear, out_features: 64}}
    - relu
    - {{type: linear, out_features: 32}}
    - relu
  head: {{type: softmax, classes: 4}}
data: {{synthetic: {{samples: 1003}}, val_fraction: 0.2, seed: 0}}
train: {{epochs: 3, batch_size: 64, device: {device}, precision: {precision},
         optimizer: {{type: adam, lr: 0.003}}}}
"""


def train(recipe: Path, out: Path, nproc: int | None, timeout: float) -> subprocess.CompletedProcess:
    if nproc is None:
        cmd = [sys.executable, "-m", "blocks", "train", str(recipe), "--out", str(out), "-q"]
    else:
        torchrun = Path(sys.executable).with_name("torchrun")
        cmd = [str(torchrun), "--standalone", f"--nproc_per_node={nproc}", "-m", "blocks", "train",
               str(recipe), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BLOCKS_DIST_TIMEOUT": "120"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nproc", type=int, default=1, help="ranks (GPUs) for torchrun (default 1)")
    parser.add_argument("--timeout", type=float, default=240, help="seconds per training run")
    parser.add_argument("--tol", type=float, default=1e-5, help="max weight difference allowed")
    parser.add_argument("--allow-cpu", action="store_true", help="without CUDA, check on gloo/CPU")
    args = parser.parse_args(argv)

    import torch
    from safetensors.torch import load_file

    cuda = torch.cuda.is_available()
    if not cuda and not args.allow_cpu:
        print("SKIP: CUDA is not available (pass --allow-cpu to run the flow on gloo)")
        return 0
    if cuda and args.nproc > torch.cuda.device_count():
        print(f"FAIL: --nproc {args.nproc} but {torch.cuda.device_count()} GPU(s)")
        return 1
    device = "cuda" if cuda else "cpu"
    print(f"torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(0)}, NCCL {torch.cuda.nccl.version()})" if cuda else ""))
    results: list[tuple[str, bool, str]] = []

    def check(name: str, ok: bool, detail: str = "") -> None:
        results.append((name, ok, detail))
        print(f"{'PASS' if ok else 'FAIL'}: {name}{f' ({detail})' if detail else ''}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        runs = {}
        for precision in ("fp32", "bf16"):
            recipe = tmp_path / f"{precision}.yaml"
            recipe.write_text(RECIPE.format(device=device, precision=precision))
            out = tmp_path / f"ddp-{precision}"
            try:
                done = train(recipe, out, args.nproc, args.timeout)
            except subprocess.TimeoutExpired:
                check(f"torchrun {precision} run finishes", False, f"still running after {args.timeout}s")
                continue
            check(f"torchrun {precision} run finishes", done.returncode == 0,
                  f"exit {done.returncode}" + (f": {done.stderr.strip()[-1500:]}" if done.returncode else ""))
            if done.returncode:
                continue
            check(f"{precision}: rank 0 alone prints", done.stdout.count("training ddp-gpu-check") == 1)
            info = json.loads((out / "run.json").read_text())
            check(f"{precision}: run.json names {args.nproc} rank(s) on {device}",
                  info.get("world_size") == args.nproc and info["device"].startswith(device),
                  f"world_size {info.get('world_size')}, device {info['device']}")
            loss = info["final"].get("train/loss", float("nan"))
            check(f"{precision}: finite final loss", math.isfinite(loss), f"train/loss {loss:.4f}")
            runs[precision] = (recipe, out)
        if "fp32" in runs:
            recipe, out = runs["fp32"]
            alone = tmp_path / "single-fp32"
            done = train(recipe, alone, None, args.timeout)
            check("single-process fp32 run finishes", done.returncode == 0, done.stderr.strip()[-1500:])
            if done.returncode == 0:
                a, b = load_file(out / "model.safetensors"), load_file(alone / "model.safetensors")
                diff = max(float((a[k] - b[k]).abs().max()) for k in a)
                check("DDP fp32 weights equal single-process weights", diff <= args.tol,
                      f"max |diff| {diff:.2e}, tol {args.tol:g}")
    failed = [name for name, ok, _ in results if not ok]
    print("PASS" if not failed else f"FAIL: {len(failed)} check(s) failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
