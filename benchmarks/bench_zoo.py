"""Zoo recipes against torchvision's own models: build time and forward time.

Build: `blocks.build(spec)` from a validated `ModelSpec` (shape inference, module creation,
weight initialisation) vs `torchvision.models.NAME()` (module creation and its initialisation).
Forward: `model(x)` vs torchvision's on the same input, eval mode, `torch.no_grad()`, after
torchvision's weights were imported (so both compute the same numbers). Both sides alternate
A, B, A, B ... and each keeps its fastest call: the number least disturbed by other work.
Single-threaded by default (as `bench_build`): on a shared machine, two threads measure the
neighbours more than the models.
Targets: build <= 1.2x, forward <= 1.05x.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import blocks
from benchmarks.timing import interleaved_best

BUILD_TARGET = 1.2
FORWARD_TARGET = 1.05
MODELS = ("vit_b_16", "convnext_tiny")


def _torchvision():
    """torchvision through the tests' import helper (it works around the CPU-only wheel)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.vision_support import try_import

    return try_import("torchvision")


def _row(name: str, ours: float, theirs: float, target: float, note: str = "") -> dict:
    row = {"name": name, "blocks_ms": ours * 1e3, "reference_ms": theirs * 1e3,
           "ratio": ours / theirs, "target": target}
    if note:
        row["note"] = note
    return row


def run(rounds: int = 4, batch: int = 1, models: tuple[str, ...] = MODELS,
        threads: int | None = 1) -> list[dict]:
    tv = _torchvision()
    if tv is None:
        print("bench_zoo: torchvision is not installed (pip install 'blocks[vision]'); skipped",
              file=sys.stderr)
        return []
    saved = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        rows = []
        for name in models:
            spec = blocks.load_recipe(name).model
            make_ref = getattr(tv.models, name)
            ours, theirs = interleaved_best([lambda spec=spec: blocks.build(spec), make_ref],
                                            rounds)
            rows.append(_row(f"build {name}", ours, theirs, BUILD_TARGET))

            reference = make_ref().eval()
            model = blocks.build(spec, seed=0).eval()
            blocks.import_weights(model, reference.state_dict())
            x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
            with torch.no_grad():
                same = float((model(x) - reference(x)).abs().max())
                ours, theirs = interleaved_best(
                    [lambda m=model, x=x: m(x), lambda r=reference, x=x: r(x)], rounds + 2)
            rows.append(_row(f"forward {name} batch {batch}", ours, theirs, FORWARD_TARGET,
                             f"max |logit difference| after import_weights: {same:.2e}; "
                             f"{torch.get_num_threads()} threads"))
        return rows
    finally:
        torch.set_num_threads(saved)


if __name__ == "__main__":
    from benchmarks.__main__ import format_table

    print(format_table(run()))
