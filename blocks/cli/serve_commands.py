"""`blocks serve RUN`: the run folder behind an HTTP endpoint (the work is in blocks.serve)."""

from __future__ import annotations

import argparse
import sys

from blocks.core.errors import Problem, SpecError

EPILOG = """examples:
  blocks serve runs/wine                         http://127.0.0.1:8000/docs
  blocks serve runs/wine --port 9000 --workers 2
  curl -s localhost:8000/predict -H 'Content-Type: application/json' \\
       -d '{"rows": [{"alcohol_level": "low", "malic_acid": 1.7, ...}]}'
endpoints: POST /predict, GET /health, GET /schema, GET /docs (OpenAPI: /openapi.json)
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve", help="serve a run over HTTP: POST /predict, GET /health, GET /schema",
        description="Serve RUN_DIR's model over HTTP (FastAPI + uvicorn; pip install "
                    "'blocks[serve]'). Rows are preprocessed as `blocks predict` does and "
                    "concurrent requests are batched into one forward pass.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--host", default="127.0.0.1", metavar="ADDRESS",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, metavar="N", default=8000, help="port (default 8000)")
    p.add_argument("--workers", type=int, metavar="N", default=1, help="server processes (default 1)")
    p.add_argument("--threads", type=int, metavar="N", help="torch threads per worker (default: CPUs / workers)")
    p.add_argument("--device", default="cpu", metavar="DEVICE", help="where the model runs: cpu (default), cuda, "
                                                   "cuda:1, mps or auto")
    p.add_argument("--max-batch", type=int, metavar="ROWS", default=64,
                   help="most rows in one forward pass of batched requests (default 64)")
    p.add_argument("--max-wait-ms", type=float, metavar="MS", default=5.0,
                   help="longest a batch waits for requests still being read (default 5)")
    p.add_argument("--max-rows", type=int, metavar="ROWS", default=1024, help="most rows per request (default 1024)")
    p.add_argument("--max-request-bytes", type=int, metavar="BYTES", default=8 << 20,
                   help="largest request body, larger ones get 413 (default 8 MiB)")
    p.add_argument("--log-level", default="info",
                   choices=("critical", "error", "warning", "info", "debug"))
    p.set_defaults(run=run_serve)


def _check(args: argparse.Namespace) -> None:
    checks = [("--port", args.port, 1, 65535), ("--workers", args.workers, 1, 64),
              ("--max-batch", args.max_batch, 1, 1 << 16), ("--max-rows", args.max_rows, 1, 1 << 20),
              ("--max-request-bytes", args.max_request_bytes, 1, 1 << 34),
              ("--threads", args.threads or 1, 1, 1024)]
    for flag, value, low, high in checks:
        if not low <= value <= high:
            raise SpecError(Problem("", f"{flag} must be {low}..{high}, got {value}", "bad_argument"))
    if not 0 <= args.max_wait_ms <= 10_000:
        raise SpecError(Problem("", f"--max-wait-ms must be 0..10000, got {args.max_wait_ms:g}",
                                "bad_argument"))


def run_serve(args: argparse.Namespace) -> int:
    _check(args)
    # lazy: `blocks --help` starts without torch, and without the optional serve extra
    from blocks.serve import require_extra

    require_extra()
    # lazy: FastAPI, uvicorn and torch load only when serving
    from blocks.serve.inputs import Limits
    from blocks.serve.server import exposure_warning, serve

    warning = exposure_warning(args.host)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    limits = Limits(max_rows=args.max_rows, max_request_bytes=args.max_request_bytes,
                    max_batch=args.max_batch, max_wait_ms=args.max_wait_ms)
    serve(args.run_dir, host=args.host, port=args.port, workers=args.workers, limits=limits,
          threads=args.threads, device=args.device, log_level=args.log_level)
    return 0
