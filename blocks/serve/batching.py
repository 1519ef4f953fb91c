"""Micro-batching: concurrent requests share one forward pass, each gets its own rows back.

Requests queue their raw rows; one task on the event loop gathers queued requests into a
batch of up to `max_batch` rows and runs `blocks.run.predicting.predict_run` on it in a worker
thread (so the event loop keeps reading and answering requests meanwhile), then splits the
predictions back by each request's row count, in order. A batch never waits for nothing: it
waits (up to `max_wait`) only while other requests have been received and are still being
read, so one client alone pays no delay; under load, requests that arrive while a forward runs
are the next batch. Forwards run one at a time, so the model is never used concurrently; a
lone request on a model whose forward takes under a millisecond runs on the event loop itself
(the hop to the thread and back costs more than that).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from blocks.core.errors import BlocksError, Problem, SpecError
from blocks.run.predicting import Predictions

Batch = np.ndarray | torch.Tensor
#: a lone request no larger than the last forward, when that took less than this, runs on the
#: event loop itself: handing it to the worker thread and back costs about as much, and
#: it blocks nobody for longer
INLINE_S = 0.001


@dataclass
class _Job:
    x: Batch
    future: asyncio.Future


class MicroBatcher:
    """Gathers requests into batches; `predict` (raw batch -> Predictions) runs them."""

    def __init__(self, predict: Callable[[Batch], Predictions], max_batch: int,
                 max_wait_s: float) -> None:
        self.predict, self.max_batch, self.max_wait_s = predict, max_batch, max_wait_s
        self._jobs: deque[_Job] = deque()
        self._queued_rows = 0
        self._arriving = 0  # requests received whose rows are not queued yet
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.batches = 0  # forwards run, and the rows they held (for /health)
        self.rows = 0
        # rows of the last forward, when it took under INLINE_S (else 0): a lone request of at
        # most that many rows may run inline
        self._quick_rows = 0

    async def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="blocks-serve-forward")
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for job in self._jobs:
            if not job.future.done():
                job.future.set_exception(RuntimeError("the server is shutting down"))
        self._jobs.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)

    @contextlib.contextmanager
    def arriving(self) -> Iterator[None]:
        """Around reading one request: while any is being read, a batch may wait for it."""
        self._arriving += 1
        try:
            yield
        finally:
            self._arriving -= 1
            self._wake()

    async def submit(self, x: Batch) -> Predictions:
        """The predictions for `x`'s rows, computed in a batch with whatever else is queued."""
        if self._task is None or self._task.done():
            raise RuntimeError("the batcher is not running (the app's lifespan did not start)")
        future = asyncio.get_running_loop().create_future()
        self._jobs.append(_Job(x, future))
        self._queued_rows += len(x)
        self._wake()
        return await future

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    async def _wait(self, timeout: float | None) -> bool:
        """Until something is queued or a request is read; False when `timeout` passed."""
        assert self._wakeup is not None
        self._wakeup.clear()
        try:
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._jobs:
                await self._wait(None)
            deadline = loop.time() + self.max_wait_s
            while self._arriving and self._queued_rows < self.max_batch:
                remaining = deadline - loop.time()
                if remaining <= 0 or not await self._wait(remaining):
                    break
            jobs = self._take()
            if not jobs:
                continue
            try:
                if (len(jobs) == 1 and len(jobs[0].x) <= self._quick_rows and not self._jobs
                        and not self._arriving):
                    results = self._forward(jobs)  # nobody waits: cheaper than a thread hop
                else:
                    results = await loop.run_in_executor(self._executor, self._forward, jobs)
            except Exception as err:  # noqa: BLE001 - a bug below: every waiting request hears it
                results = [err] * len(jobs)
            for job, result in zip(jobs, results, strict=True):
                if job.future.done():  # the client went away
                    continue
                if isinstance(result, BaseException):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)

    def _take(self) -> list[_Job]:
        """The next batch: whole requests in arrival order, up to `max_batch` rows (a larger
        request alone); requests whose client has gone are dropped."""
        jobs: list[_Job] = []
        rows = 0
        while self._jobs and (not jobs or rows + len(self._jobs[0].x) <= self.max_batch):
            job = self._jobs.popleft()
            self._queued_rows -= len(job.x)
            if not job.future.done():
                jobs.append(job)
                rows += len(job.x)
        return jobs

    # --- in the worker thread --------------------------------------------------------------------
    def _forward(self, jobs: list[_Job]) -> list[Predictions | BaseException]:
        start = time.perf_counter()
        try:
            return self._forward_timed(jobs)
        finally:
            quick = time.perf_counter() - start < INLINE_S
            self._quick_rows = sum(len(job.x) for job in jobs) if quick else 0

    def _forward_timed(self, jobs: list[_Job]) -> list[Predictions | BaseException]:
        if len(jobs) == 1:
            return [self._alone(jobs[0].x)]
        sizes = [len(job.x) for job in jobs]
        xs = [job.x for job in jobs]
        batch = (np.concatenate(xs) if all(isinstance(x, np.ndarray) for x in xs)
                 else torch.cat([torch.as_tensor(x) for x in xs]))
        try:
            predictions = self._count(self.predict(batch), len(batch))
        except (BlocksError, IndexError):  # one request's rows broke the batch: each alone
            return [self._alone(job.x) for job in jobs]
        out: list[Predictions | BaseException] = []
        start = 0
        for size in sizes:
            out.append(_rows(predictions, start, start + size))
            start += size
        return out

    def _alone(self, x: Batch) -> Predictions | BaseException:
        try:
            return self._count(self.predict(x), len(x))
        except BlocksError as err:
            return err
        except IndexError as err:  # an id past an embedding's table, say: the input's fault
            return SpecError(Problem("", f"a value is out of the range the model takes ({err})",
                                     "out_of_range"))

    def _count(self, predictions: Predictions, rows: int) -> Predictions:
        self.batches += 1
        self.rows += rows
        return predictions


def _rows(p: Predictions, start: int, stop: int) -> Predictions:
    """Rows `start:stop` of every head's labels and probabilities."""
    return Predictions({k: v[start:stop] for k, v in p.labels.items()},
                       {k: v[start:stop] for k, v in p.probabilities.items()}, p.names, p.kinds)


def answers(p: Predictions) -> list[dict[str, Any]]:
    """One JSON object per row: `label` and `probabilities` (by label name) of a softmax head,
    `labels` (name -> 0/1) and `probabilities` of a sigmoid head; keyed by head name when the
    model has several (as `blocks predict` prefixes its columns)."""
    heads: dict[str, list[dict[str, Any]]] = {}
    for head, labels in p.labels.items():
        names = p.names[head]
        probs = p.probabilities[head].reshape(len(labels), -1).tolist()
        ids = labels.reshape(len(labels), -1).tolist()
        if p.kinds[head] == "softmax":
            heads[head] = [{"label": names[i[0]], "probabilities": dict(zip(names, q, strict=True))}
                           for i, q in zip(ids, probs, strict=True)]
        else:
            heads[head] = [{"labels": dict(zip(names, i, strict=True)),
                            "probabilities": dict(zip(names, q, strict=True))}
                           for i, q in zip(ids, probs, strict=True)]
    if len(heads) == 1:
        return next(iter(heads.values()))
    return [dict(zip(heads, row, strict=True)) for row in zip(*heads.values(), strict=True)]
