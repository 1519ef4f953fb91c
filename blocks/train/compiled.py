"""`train.compile: true` where the whole step cannot be one graph (`compiled_step.py` says when):
the training forward runs through `torch.compile`, the backward and the optimizer stay eager.

Only the call is compiled: the trainer keeps the plain model, so its state dict, checkpoints
and saved runs have the same keys as without compiling and load into an uncompiled model.
Evaluation stays eager (no second graph for eval mode). Compilation happens lazily, on the
first call; a platform where it cannot work (no C++ toolchain, an unsupported backend) gets a
`CompileError` naming the fix instead of a compiler traceback mid-epoch.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from blocks.core.errors import BlocksError


class CompileError(BlocksError):
    """`train.compile: true`, but torch.compile cannot compile the model on this platform."""


class CompiledForward:
    """Calls `torch.compile(module)`; the first call (where compiling happens) turns a compiler
    failure into a `CompileError` and records how long it took (`compile_seconds`)."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.compile_seconds: float | None = None
        try:
            # eager random ops (dropout): the same masks as without compiling, from the same seed
            self._compiled = torch.compile(module, options={"fallback_random": True})
        except Exception as err:  # noqa: BLE001 - any failure to set up compiling: say so
            raise _error(err) from err

    def __call__(self, x: torch.Tensor) -> Any:
        start = time.perf_counter() if self.compile_seconds is None else None
        try:
            out = self._compiled(x)  # a new input shape may recompile: any call can fail
        except BlocksError:
            raise
        except Exception as err:  # noqa: BLE001 - inductor/dynamo raise many types; report one
            raise _error(err) from err
        if start is not None:
            self.compile_seconds = time.perf_counter() - start
        return out


def _error(err: Exception) -> CompileError:
    first = (str(err).strip().splitlines() or [""])[0][:300]
    return CompileError(f"train.compile: torch.compile failed on this platform ({type(err).__name__}: "
                        f"{first}); set `compile: false` to train eagerly")
