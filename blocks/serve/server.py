"""Run the app under uvicorn: one process, or `workers` processes sharing the port.

With several workers uvicorn starts each as a fresh process that builds its app from a factory
(`app_from_environment`), so the options travel in an environment variable; the run folder is
loaded (and checked) once here first, so a bad folder is an error before any port is bound.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import socket
from pathlib import Path

import torch
import uvicorn
from fastapi import FastAPI

from blocks.builder.device import resolve_device
from blocks.core.errors import Problem, SpecError
from blocks.run.folder import load
from blocks.serve.app import create_app
from blocks.serve.inputs import Limits

ENVIRONMENT = "BLOCKS_SERVE_OPTIONS"  # JSON: run, limits, threads, device (read by each worker)


def serve(run: str | Path, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          limits: Limits | None = None, threads: int | None = None, device: str = "cpu",
          log_level: str = "info") -> None:
    """Serve the run folder `run` until interrupted (Ctrl+C). `threads`: torch's intra-op
    threads per worker (default: the CPU count divided among the workers); `device`: where
    the model runs (`cpu`, `cuda`, `cuda:1`, `mps`, `auto`)."""
    limits = limits or Limits()
    run = Path(run)
    try:
        device = str(resolve_device(device))  # an unknown or unavailable device is refused here
    except ValueError as err:
        raise SpecError(Problem("", f"--device: {err}", "bad_argument")) from None
    model = load(run, device=device)  # a damaged or foreign folder too, before binding
    _check_port(host, port)
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    if workers == 1:
        torch.set_num_threads(threads)
        uvicorn.run(create_app(model, limits=limits), host=host, port=port, log_level=log_level)
        return
    os.environ[ENVIRONMENT] = json.dumps({"run": str(run.resolve()), "threads": threads,
                                          "device": device, "limits": dataclasses.asdict(limits)})
    uvicorn.run("blocks.serve.server:app_from_environment", factory=True, host=host, port=port,
                workers=workers, log_level=log_level)


def app_from_environment() -> FastAPI:
    """The app of one uvicorn worker process, from the options `serve` put in the environment."""
    options = json.loads(os.environ[ENVIRONMENT])
    torch.set_num_threads(int(options["threads"]))
    model = load(options["run"], device=options["device"])
    return create_app(model, limits=Limits(**options["limits"]))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str) -> str | None:
    """What to tell a user who binds beyond this machine (the server has no authentication)."""
    if is_loopback(host):
        return None
    return (f"warning: serving on {host}: anyone who can reach this machine on the network can "
            "query the model; blocks serve has no authentication or TLS (put it behind a proxy "
            "that has them), and the default, 127.0.0.1, is reachable from this machine only")


def _check_port(host: str, port: int) -> None:
    """A clear error for a port already taken (uvicorn would log it and exit 1)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            raise SpecError(Problem("", f"cannot listen on {host}:{port}: {err.strerror or err}; "
                                    "choose another --port or --host", "port_unavailable")) from None
