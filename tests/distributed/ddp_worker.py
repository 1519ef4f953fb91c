"""One rank of a distributed test launch (started by `ddp_common.launch` with torchrun's env vars).

Reads `OUT/config.json`: a list of `runs`, trained one after the other in the same process
group with `Trainer(distributed=True)`. Each run writes its final weights to
`OUT/<name>/weights-<rank>.pt` and, on rank 0, `OUT/<name>/history.json`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from ddp_common import make_data, make_model, make_spec
from torch.utils.data import TensorDataset

from blocks.train.trainer import Trainer


def train(cfg: dict, out: Path, rank: int) -> None:
    def crash(trainer, record):  # a hard crash: no exception, no clean shutdown
        if rank == cfg.get("crash_rank") and record["epoch"] == cfg.get("crash_epoch"):
            os._exit(3)

    kind = cfg.get("model", "mlp")
    model = make_model(kind)
    trainer = Trainer(model, make_spec(cfg), run_dir=cfg.get("run_dir"), quiet=True,
                      callbacks=[crash], distributed=True)
    train_data, val_data = make_data(cfg["n_train"], 1, kind), make_data(cfg["n_val"], 2, kind)
    if cfg.get("as_dataset"):
        train_data, val_data = TensorDataset(*train_data), TensorDataset(*val_data)
    history = trainer.fit(train_data, val_data, resume=cfg.get("resume", False))
    out.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.clone() for k, v in model.state_dict().items()}, out / f"weights-{rank}.pt")
    if trainer.is_main:
        (out / "history.json").write_text(json.dumps(history.to_list()))


def main(out: Path) -> None:
    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    for cfg in json.loads((out / "config.json").read_text())["runs"]:
        train(cfg, out / cfg["name"], rank)


if __name__ == "__main__":
    from blocks.train.distributed import teardown

    try:
        main(Path(sys.argv[1]))
    except Exception as err:  # the test reads the message
        print(f"{type(err).__name__}: {err}", file=sys.stderr, flush=True)
        # a process group whose peer died can abort in its C++ destructor: leave without it
        os._exit(1)
    teardown()
