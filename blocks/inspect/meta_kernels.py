"""The summary's meta-device forward without importing TorchDynamo: about half a second of every
`blocks summary` went to `import torch._dynamo`, which nothing in a summary uses.

Why it was imported: many of torch's meta kernels and decompositions (elementwise type
promotion, `native_batch_norm`, ...) are wrapped by `torch._disable_dynamo`, whose wrapper imports
`torch._dynamo` on its first call only to ask for a copy of the function that TorchDynamo will not
trace, and caches it on the function (`fn.__dynamo_disable`). Outside a `torch.compile` trace,
that copy does exactly what the function does.

`without_dynamo_import()` answers that first call with the function itself, for the duration of
the forward, then undoes everything: the cached attribute is removed from every function that got
it and `torch._dynamo` is no longer in `sys.modules`, so a later `torch.compile` in the same
process sees torch as it was. It does nothing when TorchDynamo is already imported (then the
wrapper costs nothing) or when other threads run (one of them could import TorchDynamo meanwhile).
`run_without_dynamo_import(fn)` calls `fn` that way and, should anything in it fail (code that
wants more of TorchDynamo than `disable`), calls it again as torch is: never a different answer.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

DYNAMO = "torch._dynamo"
T = TypeVar("T")
_FAILED = object()


def run_without_dynamo_import(fn: Callable[[], T],
                              failed: Callable[[T], bool] | None = None) -> T:
    """`fn()` under `without_dynamo_import`, or, if it raises or its result is `failed`, `fn()`
    again with torch untouched (its exception, if any, is then the caller's)."""
    with without_dynamo_import() as in_effect:
        try:
            result: Any = fn()
        except Exception:  # noqa: BLE001 - retried below as torch is, which raises it for real
            if not in_effect:
                raise
            result = _FAILED
    if result is _FAILED or (in_effect and failed is not None and failed(result)):
        return fn()
    return result


@contextlib.contextmanager
def without_dynamo_import() -> Iterator[bool]:
    """Run meta-device forwards without importing TorchDynamo; yields whether it is in effect."""
    if DYNAMO in sys.modules or threading.active_count() > 1:
        yield False
        return
    touched: list[Callable[..., Any]] = []

    def disable(fn: Callable[..., Any], recursive: bool = True, wrapping: bool = True) -> Any:
        touched.append(fn)
        return fn  # what TorchDynamo's `disable` does when no trace is running

    stand_in = types.ModuleType(DYNAMO, "stand-in for torch._dynamo during a summary's forward")
    stand_in.disable = disable  # type: ignore[attr-defined]
    sys.modules[DYNAMO] = stand_in
    try:
        yield True
    finally:
        if sys.modules.get(DYNAMO) is stand_in:
            del sys.modules[DYNAMO]
        torch_module = sys.modules.get("torch")
        if getattr(torch_module, "__dict__", {}).get("_dynamo") is stand_in:
            delattr(torch_module, "_dynamo")
        for fn in touched:
            if getattr(fn, "__dynamo_disable", None) is fn:
                with contextlib.suppress(AttributeError, TypeError):
                    delattr(fn, "__dynamo_disable")
