"""One rank of `test_ddp_stream.py`'s launch: `blocks train` on a streamed folder of Parquet
shards under torchrun's environment; each rank writes the rows it trained on per epoch (their
`rid` feature) and the model's fitted statistics to OUT/rank-<r>.json."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from blocks.data import stream_batches
from blocks.run.training import run_recipe
from blocks.train import distributed as dist


def main(out: Path) -> None:
    torch.set_num_threads(1)
    info = dist.setup(cuda=False)
    seen: list[list[float]] = []
    original = stream_batches.StreamBatches._own_shards

    def spy(self, shards):  # the training epochs only (shuffled): validation reads its own
        rows: list[float] = []
        for x, y in original(self, shards):
            if self.shuffle:
                rows += x[:, 0].tolist()
            yield x, y
        if self.shuffle:
            seen.append(rows)

    stream_batches.StreamBatches._own_shards = spy
    result = run_recipe(out / "r.yaml", out / f"run-{info.rank}", quiet=True, plots=False,
                        dist_info=info, force=True)
    module = result.model.preprocess_module
    (out / f"rank-{info.rank}.json").write_text(json.dumps({
        "epochs": seen, "mean": module.mean.flatten().tolist(), "std": module.std.flatten().tolist(),
        "categories": result.model.spec.preprocess.categories}))


if __name__ == "__main__":
    try:
        main(Path(sys.argv[1]))
    except Exception as err:
        print(f"{type(err).__name__}: {err}", file=sys.stderr, flush=True)
        os._exit(1)
    dist.teardown()
