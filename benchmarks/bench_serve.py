"""`blocks serve` against a hand-written FastAPI endpoint around the same `nn.Module`.

Both servers run in their own process (one uvicorn worker, one torch thread, access log off)
on the same run folder: a small CNN on the bundled 8x8 digits, trained for one epoch here.
The reference is what people write by hand: a pydantic body `rows: list[list[float]]`, a sync
endpoint (FastAPI runs it in its thread pool), `model(x).softmax(-1)`, a dict per row. It does
less than `blocks serve`: no schema-derived validation (row length, float32 range), no
micro-batching, no size limit.

Clients send one row per request over keep-alive connections from a minimal asyncio HTTP/1.1
client in this process (httpx costs more CPU per request than the servers measured). For 1 and
16 concurrent clients, each contestant is measured for `seconds` per round, rounds interleaved
(ours, reference, ours, ...). Rows report the server process's CPU time per request (best
round; from /proc, wall time per request where that is missing) and their ratio, because on a
shared machine the wall-clock rate mostly measures the neighbours: a server bound by its CPU
serves 1 / (CPU per request) requests per second of CPU. Target: <= 1/0.9 (>= 0.9x the
reference's throughput) at one client, <= 1.0 at 16 (batching should win there). Notes give
the wall-clock requests/s and p50/p99 latency of each one's fastest round.

    python -m benchmarks.bench_serve     # this module alone

(No `from __future__ import annotations` here: FastAPI reads the reference endpoint's
annotations at run time, and its body model is local to `reference_app`.)
"""


import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECIPE = """\
model:
  name: digits-bench
  input: {shape: [1, 8, 8]}
  backbone:
    - {type: conv2d, out_channels: 8, kernel_size: 3, padding: 1}
    - relu
    - flatten
  head: {type: softmax, classes: 10}
data: {dataset: digits, val_fraction: 0.2}
train: {epochs: 1, batch_size: 64, optimizer: {type: adam, lr: 0.01}, seed: 0}
"""


def reference_app(run_dir: str):
    """The hand-written endpoint: what a FastAPI tutorial has you write around a model."""
    import torch
    from fastapi import FastAPI
    from pydantic import BaseModel

    import blocks

    torch.set_num_threads(1)
    model = blocks.load(run_dir)
    names = model.label_names()

    class Rows(BaseModel):
        rows: list[list[float]]

    app = FastAPI()

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.post("/predict")
    def predict(body: Rows) -> dict:
        x = torch.tensor(body.rows, dtype=torch.float32)
        with torch.inference_mode():
            probs = model(x).softmax(-1)
        return {"predictions": [{"label": names[int(p.argmax())],
                                 "probabilities": dict(zip(names, p.tolist(), strict=True))}
                                for p in probs]}

    return app


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start(command: list[str], port: int, log: Path, **env_extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **env_extra}
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not start: {log.read_text()[-2000:]}")


# --- the load generator --------------------------------------------------------------------------
async def _request(reader, writer, request: bytes) -> bytes:
    writer.write(request)
    status = await reader.readline()
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length)
    if b" 200 " not in status:
        raise RuntimeError(f"{status!r}: {body[:300]!r}")
    return body


async def _load(port: int, body: bytes, clients: int, seconds: float) -> tuple[float, list[float]]:
    """(requests per second, latencies in s) of `clients` keep-alive clients for `seconds`."""
    request = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    latencies: list[float] = []
    warm_until = time.perf_counter() + min(0.3, seconds / 4)
    stop = warm_until + seconds
    counted = 0

    async def client() -> None:
        nonlocal counted
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while True:
                start = time.perf_counter()
                if start >= stop:
                    return
                await _request(reader, writer, request)
                end = time.perf_counter()
                if start >= warm_until:
                    latencies.append(end - start)
                    counted += 1
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - warm_until
    return counted / elapsed, latencies


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- the benchmark -------------------------------------------------------------------------------
def measure(seconds: float = 2.0, rounds: int = 3, concurrency: tuple[int, ...] = (1, 16)) -> list[dict]:
    from sklearn.datasets import load_digits

    from blocks.run.training import run_recipe

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        folder = Path(tmp)
        (folder / "digits.yaml").write_text(RECIPE)
        run = folder / "run"
        run_recipe(str(folder / "digits.yaml"), str(run), quiet=True, plots=False)
        body = json.dumps({"rows": [load_digits().data[0].tolist()]}).encode()
        ours_port, ref_port = _free_port(), _free_port()
        ours = _start([sys.executable, "-m", "blocks", "serve", str(run), "--port", str(ours_port),
                       "--threads", "1", "--log-level", "warning"], ours_port, folder / "ours.log")
        try:
            ref = _start([sys.executable, "-m", "uvicorn", "--factory", "--port", str(ref_port),
                          "--log-level", "warning", "--no-access-log",
                          "benchmarks.bench_serve:reference_from_environment"], ref_port,
                         folder / "ref.log", BENCH_SERVE_RUN=str(run))
            try:
                return _rows({"ours": (ours.pid, ours_port), "ref": (ref.pid, ref_port)}, body,
                             seconds, rounds, concurrency)
            finally:
                _stop(ref)
        finally:
            _stop(ours)


def reference_from_environment():
    """The reference server's app factory (uvicorn --factory), for the run `measure` trained."""
    return reference_app(os.environ["BENCH_SERVE_RUN"])


def _stop(process: subprocess.Popen | None) -> None:
    if process is None:
        return
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _round(pid: int, port: int, body: bytes, clients: int, seconds: float) -> dict:
    before = _cpu_seconds(pid)
    rps, latencies = asyncio.run(_load(port, body, clients, seconds))
    after = _cpu_seconds(pid)
    count = max(1, len(latencies))
    cpu = (after - before) / count if before is not None and after is not None else None
    return {"rps": rps, "latencies": latencies, "cpu": cpu}


def _rows(servers: dict[str, tuple[int, int]], body: bytes, seconds: float, rounds: int,
          concurrency: tuple[int, ...]) -> list[dict]:
    """`servers`: name -> (pid, port) of "ours" and "ref"."""
    rows = []
    for clients in concurrency:
        results: dict[str, list[dict]] = {"ours": [], "ref": []}
        for _ in range(rounds):
            for name, (pid, port) in servers.items():
                results[name].append(_round(pid, port, body, clients, seconds))
        fastest = {name: max(r, key=lambda x: x["rps"]) for name, r in results.items()}
        cpus = {name: [x["cpu"] for x in r if x["cpu"] is not None] for name, r in results.items()}
        ours, ref = fastest["ours"], fastest["ref"]
        by_cpu = all(cpus.values())
        if by_cpu:  # CPU time per request: what a neighbour's load on the machine does not inflate
            ours_ms, ref_ms = min(cpus["ours"]) * 1e3, min(cpus["ref"]) * 1e3
        else:
            ours_ms, ref_ms = 1e3 / ours["rps"], 1e3 / ref["rps"]
        target = 1 / 0.9 if clients == 1 else 1.0

        def summary(result: dict) -> str:
            lat = result["latencies"]
            return (f"{result['rps']:,.0f} req/s, p50 {statistics.median(lat) * 1e3:.2f} ms, "
                    f"p99 {_percentile(lat, 0.99) * 1e3:.2f} ms")

        measure_ = "server CPU ms per request" if by_cpu else "wall ms per request"
        rows.append({"name": f"serve {clients} client{'s' if clients > 1 else ''}, 1 row/request",
                     "blocks_ms": ours_ms, "reference_ms": ref_ms, "ratio": ours_ms / ref_ms,
                     "target": round(target, 3),
                     "note": f"{measure_}; blocks serve {summary(ours)}; hand-written FastAPI "
                             f"{summary(ref)}; wall throughput {ours['rps'] / ref['rps']:.2f}x, "
                             f"per CPU second {ref_ms / ours_ms:.2f}x"})
    return rows


def run() -> list[dict]:
    return measure()


if __name__ == "__main__":
    from benchmarks.__main__ import format_table

    print(format_table(run()))
