"""`data.stream` under DDP over a folder of Parquet shards (issue 21): rank r reads shards
r::world_size only; the ranks step equally often, their rows together are the training split
(each row once per epoch), and the statistics and vocabularies are the whole split's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ddp_common import free_port

import blocks
from blocks.data.splits import load_splits

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

SHARD_ROWS = (40, 25, 31)  # uneven shards: the ranks hold different numbers of rows
RECIPE = """model:
  input: {shape: [8]}
  backbone: [{type: linear, out_features: 8}, relu]
  head: {type: softmax, classes: 2}
data:
  parquet: {path: shards, target: label, categorical: [colour]}
  val_fraction: 0.2
  seed: 4
  stream: {chunk_rows: 16, shuffle_buffer: %d}
train: {epochs: 2, batch_size: 10, device: cpu, seed: 1}
"""


def write_folder(root: Path, buffer: int = 8) -> Path:
    """Shards of rows numbered 0..95 in `rid` (a feature, so a batch says which rows it holds)."""
    rng = np.random.default_rng(0)
    (root / "shards").mkdir(parents=True, exist_ok=True)
    start = 0
    for k, rows in enumerate(SHARD_ROWS):
        rid = np.arange(start, start + rows, dtype=np.float64)
        x = rng.standard_normal((rows, 3))
        colour = np.array(["red", "blue", "green"] if k < 2 else ["red", "teal", "blue"])[
            np.arange(rows) % 3]
        pq.write_table(pa.table({"rid": rid, "a": x[:, 0], "b": x[:, 1], "c": x[:, 2],
                                 "colour": colour,
                                 "label": np.where(x[:, 0] > 0, "yes", "no")}),
                       root / "shards" / f"part-{k}.parquet")
        start += rows
    (root / "r.yaml").write_text(RECIPE % buffer)
    return root / "r.yaml"


def rows_of(batches) -> list[list[float]]:
    return [x[:, 0].tolist() for x, _ in batches]


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("buffer", [8, 1000])
def test_each_rank_reads_its_own_shards_and_together_they_cover_the_split(tmp_path, monkeypatch,
                                                                          buffer, drop_last):
    splits = load_splits(blocks.load_recipe(write_folder(tmp_path, buffer)))
    table = splits.train.dataset
    whole = sorted(r for x, _, _ in table.chunks() for r in x[:, 0].tolist())
    opened: list[list[str]] = []
    real = pq.ParquetFile

    def spy(path, *args, **kwargs):  # which files rows are read from (footers aside)
        handle = real(path, *args, **kwargs)
        read = handle.iter_batches

        def iter_batches(*a, **k):
            opened[-1].append(Path(path).name)
            return read(*a, **k)

        handle.iter_batches = iter_batches
        return handle

    monkeypatch.setattr(pq, "ParquetFile", spy)
    per_rank = []
    for rank in range(2):
        opened.append([])
        batches = table.batches(10, shuffle=True, drop_last=drop_last,
                                generator=torch.Generator().manual_seed(0), shard=(rank, 2))
        per_rank.append(rows_of(batches))
        assert len(per_rank[-1]) == len(batches)  # both ranks step len(batches) times
    assert set(opened[0]) == {"part-0.parquet", "part-2.parquet"}
    assert set(opened[1]) == {"part-1.parquet"}
    mine = [sorted(r for batch in rows for r in batch) for rows in per_rank]
    assert all(r < 40 or r >= 65 for r in mine[0]) and all(40 <= r < 65 for r in mine[1])
    union = sorted(mine[0] + mine[1])
    if drop_last:
        assert len(set(union)) == len(union) and set(union) <= set(whole)
        assert len(union) <= len(table) // 10 * 10
    else:
        assert union == whole  # every training row once
    assert len(per_rank[0]) == len(per_rank[1]) == len(table.batches(
        10, shuffle=True, drop_last=drop_last, generator=torch.Generator()))


def test_fewer_shards_than_ranks_share_every_batch(tmp_path):
    splits = load_splits(blocks.load_recipe(write_folder(tmp_path)))
    table = splits.train.dataset
    assert table.shard_files(0, 4) is None and table.shard_files(1, 2) == [1]
    shares = [rows_of(table.batches(10, shuffle=True, drop_last=False,
                                    generator=torch.Generator().manual_seed(0), shard=(r, 4)))
              for r in range(4)]
    whole = rows_of(table.batches(10, shuffle=True, drop_last=False,
                                  generator=torch.Generator().manual_seed(0)))
    assert [sum((s[b] for s in shares), []) for b in range(len(whole))] == whole


@pytest.mark.multiprocess
@pytest.mark.slow
def test_two_ranks_train_on_their_own_shards(tmp_path):
    write_folder(tmp_path)
    reference = load_splits(blocks.load_recipe(tmp_path / "r.yaml"))
    expected = sorted(r for x, _, _ in reference.train.dataset.chunks() for r in x[:, 0].tolist())
    stats = reference.train.dataset.statistics()
    port = free_port()
    worker = Path(__file__).with_name("stream_worker.py")
    procs = [subprocess.Popen([sys.executable, str(worker), str(tmp_path)], env=dict(
        os.environ, RANK=str(r), WORLD_SIZE="2", LOCAL_RANK=str(r), LOCAL_WORLD_SIZE="2",
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    for rank, proc in enumerate(procs):
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise AssertionError(f"rank {rank} still running after 120 s: a hang") from None
        assert proc.returncode == 0, f"rank {rank} failed:\n{err[-3000:]}"
    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["mean"] == ranks[1]["mean"] == pytest.approx(stats["mean"].tolist(), abs=1e-6)
    assert ranks[0]["std"] == ranks[1]["std"]
    assert ranks[0]["categories"] == ranks[1]["categories"] == {"colour": ["blue", "green", "red",
                                                                           "teal"]}
    for epoch in range(2):
        mine = [sorted(rank["epochs"][epoch]) for rank in ranks]
        assert all(r < 40 or r >= 65 for r in mine[0]) and all(40 <= r < 65 for r in mine[1])
        assert sorted(mine[0] + mine[1]) == expected


def test_a_rank_whose_shards_hold_next_to_nothing_shares_every_batch_instead(tmp_path):
    """Shards of 88 + 2 and 6 rows on two ranks: the second would step on empty and one-row
    batches (a BatchNorm refuses those in training), so both read the whole table and take
    their share of each global batch, as with fewer shards than ranks."""
    global SHARD_ROWS
    saved, SHARD_ROWS = SHARD_ROWS, (88, 6, 2)
    try:
        splits = load_splits(blocks.load_recipe(write_folder(tmp_path)))
    finally:
        SHARD_ROWS = saved
    table = splits.train.dataset
    assert table.shard_files(1, 2) == [1]  # there are shards enough, but too uneven ones

    def batches(**shard):
        return table.batches(10, shuffle=True, drop_last=False,
                             generator=torch.Generator().manual_seed(0), **shard)

    assert table.rows_in([1]) < 2 * len(batches())  # its own shard: under 2 rows a step
    shares = [rows_of(batches(shard=(r, 2))) for r in range(2)]
    whole = rows_of(batches())
    assert [shares[0][b] + shares[1][b] for b in range(len(whole))] == whole
    assert min(len(rows) for share in shares for rows in share) >= 3  # the last batch: 7 rows
