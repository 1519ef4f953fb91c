"""Distributed data-parallel training (torchrun + DDP) with the single-process mean-loss semantics.

The contract, which the `Trainer` relies on:

* `train.batch_size` is the **global** batch size. Every rank draws the same permutation (the
  data generator is seeded identically everywhere), cuts it into the same global batches as a
  single process would, and takes a contiguous share of each global batch (`shard_bounds`:
  sizes differ by at most one; a rank's share may be empty in a small last batch).
* The per-head loss normalisers (sample counts, class-weight totals) are all-reduced (SUM), so
  each rank divides its local loss *sum* by the *global* normaliser; DDP's gradient all-reduce
  is replaced by a SUM hook (`sum_gradients_hook`), so the synchronised gradient is exactly the
  mean gradient of the global batch. A rank with an empty share still takes part in the
  backward (a zero loss touching every parameter), so nothing hangs.
* Epoch metrics are all-reduced as sums and counts (`all_reduce_metrics`), never as rank means.

Nothing here runs in a single process: the `Trainer` only calls these helpers when a process
group is active, so non-distributed numerics and speed are untouched.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from blocks.core.errors import BlocksError

TIMEOUT_ENV = "BLOCKS_DIST_TIMEOUT"  # seconds a collective may wait before the run fails
DEFAULT_TIMEOUT_S = 600.0
_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class DistributedError(BlocksError):
    """A distributed run cannot go on: no process group, a lost rank, a collective timeout."""


@dataclass(frozen=True)
class RankInfo:
    """Where this process sits in the run: global rank, number of ranks, rank on this machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int]:
        return self.rank, self.world_size


# --- process group ------------------------------------------------------------------------------
def launched_by_torchrun() -> bool:
    """True when the torchrun (or an equivalent launcher's) environment variables are set."""
    return all(name in os.environ for name in _TORCHRUN_VARS)


def is_active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank_info() -> RankInfo:
    """This process's rank; `RankInfo()` (rank 0 of 1) when no process group is active."""
    if not is_active():
        return RankInfo()
    return RankInfo(dist.get_rank(), dist.get_world_size(),
                    int(os.environ.get("LOCAL_RANK", dist.get_rank())))


def timeout_s() -> float:
    return float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))


def setup(*, cuda: bool | None = None, backend: str | None = None) -> RankInfo:
    """Initialise the default process group from the torchrun environment (idempotent).

    NCCL when training on CUDA (each rank on `cuda:LOCAL_RANK`), gloo on CPU. A collective that
    waits longer than `$BLOCKS_DIST_TIMEOUT` seconds (default 600) fails instead of hanging.
    """
    if is_active():
        return rank_info()
    if not dist.is_available():
        raise DistributedError("this PyTorch build has no torch.distributed support")
    if not launched_by_torchrun():
        missing = ", ".join(v for v in _TORCHRUN_VARS if v not in os.environ)
        raise DistributedError("distributed training needs a process group: launch with "
                               "`torchrun --nproc_per_node=N ...` or call "
                               f"torch.distributed.init_process_group first (missing {missing})")
    cuda = torch.cuda.is_available() if cuda is None else cuda
    local_rank = int(os.environ["LOCAL_RANK"])
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise DistributedError(f"LOCAL_RANK {local_rank} but this machine has "
                                   f"{torch.cuda.device_count()} CUDA device(s): start at most one "
                                   "process per GPU (--nproc_per_node)")
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend or ("nccl" if cuda else "gloo"),
                            timeout=timedelta(seconds=timeout_s()))
    return rank_info()


def teardown() -> None:
    """Leave the process group together: a barrier first, so no rank closes its connections
    while another is still using them (gloo can abort in its destructor if one does)."""
    if is_active():
        with contextlib.suppress(RuntimeError):
            dist.barrier()
        dist.destroy_process_group()


def local_device(cuda: bool) -> torch.device:
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")


def resolve(distributed: bool | None) -> RankInfo | None:
    """The `Trainer(distributed=...)` option: None = auto (an active process group), True = set
    one up from the environment if needed, False = train this process alone."""
    if distributed is False:
        return None
    if distributed is None:
        return rank_info() if is_active() else None
    return setup()


@contextlib.contextmanager
def collective_errors(info: RankInfo, where: str) -> Iterator[None]:
    """Turn a lost peer or a timed-out collective into one clear `DistributedError`."""
    try:
        yield
    except DistributedError:
        raise
    except RuntimeError as err:
        if not _looks_like_comm_failure(err):
            raise
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise DistributedError(
            f"rank {info.rank} of {info.world_size} lost contact with the other ranks during "
            f"{where}: another rank probably failed or was killed (see its error above), or a "
            f"collective waited longer than ${TIMEOUT_ENV}={timeout_s():g}s. ({first})") from err


def _looks_like_comm_failure(err: RuntimeError) -> bool:
    kinds = tuple(getattr(dist, n) for n in ("DistError", "DistBackendError", "DistNetworkError")
                  if hasattr(dist, n))
    if kinds and isinstance(err, kinds):
        return True
    text = str(err).lower()
    return any(s in text for s in ("connection closed", "connection reset", "timed out", "timeout",
                                   "broken pipe", "gloo", "nccl", "socket", "peer"))


# --- sharding -----------------------------------------------------------------------------------
def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, stop) of `rank`'s contiguous share of `n` items; shares differ by at most one."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


class GlobalBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batch sampler for a `Dataset`: the same global batches on every rank, this rank's share."""

    def __init__(self, size: int, batch_size: int, *, shuffle: bool, drop_last: bool,
                 generator: torch.Generator, shard: tuple[int, int]) -> None:
        self.size, self.batch_size = size, batch_size
        self.shuffle, self.drop_last, self.generator = shuffle, drop_last, generator
        self.rank, self.world_size = shard

    def __len__(self) -> int:
        full, rest = divmod(self.size, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self) -> Iterator[list[int]]:
        order = (torch.randperm(self.size, generator=self.generator) if self.shuffle
                 else torch.arange(self.size))
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            batch = order[start:start + self.batch_size]
            lo, hi = shard_bounds(len(batch), self.rank, self.world_size)
            yield batch[lo:hi].tolist()


# --- DDP ----------------------------------------------------------------------------------------
def sum_gradients_hook(state, bucket):
    """DDP communication hook that SUMS gradients (the default averages over ranks): each rank's
    loss is already divided by the global normaliser, so the sum is the global mean gradient."""
    fut = dist.all_reduce(bucket.buffer(), group=state, async_op=True).get_future()
    return fut.then(lambda f: f.value()[0])


# DDP checks the hook's real annotations (this module's are strings: `from __future__`)
if dist.is_available():
    sum_gradients_hook.__annotations__ = {"bucket": dist.GradBucket,
                                          "return": torch.futures.Future[torch.Tensor]}


def wrap(model: nn.Module, device: torch.device) -> nn.parallel.DistributedDataParallel:
    """DDP around `model` (which stays the thing to save: no `module.` prefix in checkpoints)."""
    ddp = nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None,
        output_device=device.index if device.type == "cuda" else None)
    ddp.register_comm_hook(None, sum_gradients_hook)
    return ddp


def empty_share_loss(params: list[nn.Parameter]) -> torch.Tensor:
    """A zero loss on every parameter, for a rank whose share of a global batch is empty."""
    return sum((p.sum() for p in params), torch.zeros((), device=params[0].device)) * 0.0


# --- reductions ---------------------------------------------------------------------------------
def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_norms(norms: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
    """Per-head loss normalisers summed over ranks, in one all-reduce."""
    names = list(norms)
    local = torch.stack([torch.as_tensor(norms[n], dtype=torch.float64, device=device).reshape(())
                         for n in names])
    all_reduce_sum(local)
    return {n: local[i].to(torch.float32) for i, n in enumerate(names)}


_METRIC_FIELDS = ("loss_sum", "loss_norm", "correct", "tp", "fp", "fn")


def all_reduce_metrics(metrics: dict[str, Any]) -> None:
    """Sum every `HeadMetrics`' sums and counts over ranks, in place, in one all-reduce."""
    parts: list[torch.Tensor] = []
    device = None
    for m in metrics.values():
        m.settle()
        device = m.loss_sum.device
        parts += [getattr(m, f).reshape(-1).to(torch.float64) for f in _METRIC_FIELDS]
        parts.append(torch.tensor([float(m.samples)], dtype=torch.float64, device=device))
    if device is None:
        return
    flat = all_reduce_sum(torch.cat(parts))
    at = 0
    for m in metrics.values():
        for f in _METRIC_FIELDS:
            old = getattr(m, f)
            setattr(m, f, flat[at:at + old.numel()].reshape(old.shape).clone())
            at += old.numel()
        m.samples = int(round(float(flat[at])))
        at += 1


def check_same_length(length: int | None, info: RankInfo) -> None:
    """Every rank must see the same number of batches, or the gradient all-reduce would hang."""
    if length is None:
        return
    lengths: list[Any] = [None] * info.world_size
    dist.all_gather_object(lengths, length)
    if len(set(lengths)) != 1:
        raise DistributedError(f"the ranks have different numbers of batches per epoch ({lengths}); "
                               "pass tensors or a Dataset (blocks shards them), or give every rank "
                               "a DataLoader of the same length (e.g. with a DistributedSampler)")


def gather_rng_states(cuda: bool) -> dict[str, list[torch.Tensor]]:
    """Every rank's torch (and CUDA) RNG state, for a checkpoint that resumes each rank exactly."""
    world = dist.get_world_size()
    states: list[Any] = [None] * world
    dist.all_gather_object(states, torch.get_rng_state())
    out = {"ranks": states}
    if cuda:
        cuda_states: list[Any] = [None] * world
        dist.all_gather_object(cuda_states, torch.cuda.get_rng_state())
        out["cuda_ranks"] = cuda_states
    return out


def restore_rng_states(rng: dict[str, Any], info: RankInfo, seed: int, step: int) -> None:
    """This rank's RNG from a checkpoint; a fresh, rank-specific stream if it has none (a run
    resumed with more ranks than it was saved with)."""
    ranks = rng.get("ranks") or []
    if info.rank < len(ranks):
        torch.set_rng_state(ranks[info.rank])
    elif info.rank == 0:
        torch.set_rng_state(rng["torch"])
    else:
        torch.manual_seed(seed + info.rank + 1_000_003 * step)
    cuda_ranks = rng.get("cuda_ranks") or []
    if torch.cuda.is_available() and info.rank < len(cuda_ranks):
        torch.cuda.set_rng_state(cuda_ranks[info.rank])
