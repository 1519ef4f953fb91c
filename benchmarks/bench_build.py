"""Build and forward time of `blocks` models against the same modules written by hand.

Models: a tiny MLP (32 -> 64 -> 64 -> 10, batch 256) and the seed CNN (Conv2d(1, 32, 3) ->
flatten -> Linear(21632, 10), batch 64). Both sides run in the same process, interleaved block by
block, single-threaded; each number is the fastest block's per-call time (see `_compare`).

- build: `blocks.build(spec)` from an already-validated `ModelSpec` (shape inference + module
  creation + device check) and from a plain dict (adds pydantic validation), vs the same module
  tree written by hand (`HandWritten`: backbone `nn.Sequential` + classifier `nn.Linear`, sizes
  computed by hand). Weight initialisation dominates both for the seed CNN.
- forward: `model(x)` vs `hand(x)` under `torch.no_grad()`. Targets: forward <= 1.05x,
  build (validated spec) <= 1.2x.
- check: the per-call cost of the input device/shape/dtype check, `model(x)` vs
  `head(backbone(x))` (the same layers without the check), reported in microseconds.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.benchmark import Timer

import blocks

FORWARD_TARGET = 1.05
BUILD_TARGET = 1.2


def mlp_dict() -> dict:
    return {"name": "tiny-mlp", "input": {"shape": [32]},
            "backbone": [{"type": "linear", "out_features": 64}, "relu",
                         {"type": "linear", "out_features": 64}, "relu"],
            "head": {"type": "softmax", "classes": 10}}


class HandWritten(nn.Module):
    """What a careful user writes by hand: a feature extractor and a classifier, built in
    `__init__` with hand-computed sizes: the same module tree `blocks.build` makes."""

    def __init__(self, backbone: list[nn.Module], head: nn.Module) -> None:
        super().__init__()
        self.backbone = nn.Sequential(*backbone)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def hand_mlp() -> nn.Module:
    return HandWritten([nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU()], nn.Linear(64, 10))


def cnn_dict() -> dict:
    return blocks.load_recipe("seed_cnn").model.model_dump(mode="json")


def hand_cnn() -> nn.Module:
    return HandWritten([nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Flatten()], nn.Linear(32 * 26 * 26, 10))


CASES = {
    "tiny-mlp": (mlp_dict, hand_mlp, (256, 32)),
    "seed-cnn": (cnn_dict, hand_cnn, (64, 1, 28, 28)),
}


def _number(timer: Timer, block_s: float) -> int:
    """Calls per timed block so one block takes about `block_s` seconds."""
    number = 1
    while True:
        took = timer.timeit(number).median * number
        if took >= block_s or number >= 1 << 20:
            return number
        number *= 2 if took * 10 < block_s else max(2, int(block_s / max(took, 1e-9)))


def _compare(ours, theirs, rounds: int, min_run_time: float) -> tuple[float, float]:
    """Per-call seconds of both sides: blocks of calls alternate A, B, A, B ... (`rounds` x 10
    each, about `min_run_time` / 10 seconds a block), and each side keeps its fastest block.
    The minimum is the number least disturbed by other work on the machine."""
    timers = [Timer(stmt="fn()", globals={"fn": fn}) for fn in (ours, theirs)]
    numbers = [_number(timer, min_run_time / 10) for timer in timers]
    best = [float("inf"), float("inf")]
    for _ in range(rounds * 10):
        for side, (timer, number) in enumerate(zip(timers, numbers, strict=True)):
            best[side] = min(best[side], timer.timeit(number).median)
    return best[0], best[1]


def _row(name: str, ours: float, theirs: float, target: float | None, note: str = "") -> dict:
    row = {"name": name, "blocks_ms": ours * 1e3, "reference_ms": theirs * 1e3,
           "ratio": ours / theirs, "target": target}
    if note:
        row["note"] = note
    return row


def run(rounds: int = 5, min_run_time: float = 0.2, cases: tuple[str, ...] = tuple(CASES)) -> list[dict]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = []
        for case in cases:
            make_dict, make_hand, batch_shape = CASES[case]
            data = make_dict()
            spec = blocks.ModelSpec.model_validate(data)
            model = blocks.build(spec, seed=0).eval()
            hand = make_hand().eval()
            x = torch.randn(batch_shape, generator=torch.Generator().manual_seed(0))

            ours, theirs = _compare(lambda spec=spec: blocks.build(spec), make_hand, rounds, min_run_time)
            rows.append(_row(f"build {case} (validated spec)", ours, theirs, BUILD_TARGET))
            ours, theirs = _compare(lambda data=data: blocks.build(data), make_hand, rounds, min_run_time)
            rows.append(_row(f"build {case} (from dict)", ours, theirs, None,
                             "includes pydantic validation of the dict"))

            with torch.no_grad():
                ours, theirs = _compare(lambda m=model, x=x: m(x), lambda h=hand, x=x: h(x), rounds, min_run_time)
                rows.append(_row(f"forward {case} batch {batch_shape[0]}", ours, theirs, FORWARD_TARGET))
                ours, theirs = _compare(lambda m=model, x=x: m(x), _unchecked(model, x),
                                        rounds, min_run_time)
            rows.append(_row(f"input check {case}", ours, theirs, None,
                             f"model(x) - head(backbone(x)) = {(ours - theirs) * 1e6:+.2f} us per call"))
        return rows
    finally:
        torch.set_num_threads(threads)


def _unchecked(model, x):
    """The model's own layers called without its input check (single head, no preprocess)."""
    backbone, head = model.backbone, model.head
    return lambda: head(backbone(x))


if __name__ == "__main__":
    from benchmarks.__main__ import format_table

    print(format_table(run()))
