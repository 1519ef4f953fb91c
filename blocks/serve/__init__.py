"""`blocks serve`: a run folder behind an HTTP endpoint (FastAPI + uvicorn, the `serve` extra).

`POST /predict` answers raw rows with the run's own preprocessing and `blocks predict`'s
answers, batching concurrent requests into one forward; `GET /health`, `GET /schema` and the
OpenAPI document (`/docs`) are derived from the run's inputs. Python:

    from blocks.serve import create_app, serve   # needs: pip install 'blocks[serve]'

May import everything up to `run`: `core`, `spec`, `recipe`, `layers`, `builder`, `data`,
`train`, `inspect`, `run`. Never `exporters` or `cli`; only `cli` imports it. This module
itself imports neither FastAPI nor torch, so `import blocks` never does.
"""

from __future__ import annotations

import importlib
from typing import Any

from blocks.core.errors import Problem, SpecError

#: public name -> the module of this package that defines it (loaded on first use)
_EXPORTS = {"create_app": "blocks.serve.app", "serve": "blocks.serve.server",
            "Limits": "blocks.serve.inputs", "input_schema": "blocks.serve.inputs"}


def require_extra() -> None:
    """A located error naming the extra to install when FastAPI or uvicorn is missing."""
    try:
        import fastapi  # noqa: F401  # optional: the `serve` extra
        import uvicorn  # noqa: F401  # optional: the `serve` extra
    except ImportError as err:
        raise SpecError(Problem("", f"blocks serve needs FastAPI and uvicorn ({err.name} is not "
                                "installed): pip install 'blocks[serve]'", "missing_extra")) from None


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'blocks.serve' has no attribute {name!r}")
    require_extra()
    return getattr(importlib.import_module(module), name)
