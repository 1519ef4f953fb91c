"""What every block family file shares: its torch classes defined on first use, the PEP 562
lookup that finds them as module attributes, and the field types several families use.

A family file (`blocks/layers/gating.py`, ...) must import without torch, so that
`blocks validate` and `blocks schema` start fast, yet it holds the `nn.Module` classes its types
build, and those need `torch.nn.Module` as a base class. So the classes are written inside a
function that receives `torch` and `nn` and runs at the first build:

    @torch_modules("SqueezeExcitation")
    def modules(torch, nn):
        class SqueezeExcitation(nn.Module): ...
        return {"SqueezeExcitation": SqueezeExcitation}

    __getattr__ = module_getattr(__name__, modules)    # blocks.layers.gating.SqueezeExcitation

`modules().SqueezeExcitation(...)` inside `build` imports torch and defines the classes once.
Each class gets the family module as `__module__` and its plain name as `__qualname__`, so
pickling, `repr`, torchinfo and error messages name it `blocks.layers.gating.SqueezeExcitation`.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from types import SimpleNamespace
from typing import Annotated, Any

from pydantic import Field

from blocks.core.numbers import NonNegativeSize, Size

Probability = Annotated[float, Field(ge=0.0, lt=1.0)]
IntOrList = Size | list[Size]
PadOrList = NonNegativeSize | list[NonNegativeSize]
#: how shape errors name the per-sample axes of 1-d and 2-d spatial inputs
SPATIAL = {1: "channels, length", 2: "channels, height, width"}

#: every family's TorchModules, in definition order (tests list the classes from here)
ALL: list[TorchModules] = []


def as_tuple(value: Any) -> Any:
    """A recipe's list (`kernel_size: [3, 5]`) as the tuple torch layers keep; else unchanged."""
    return tuple(value) if isinstance(value, list) else value


class TorchModules:
    """A family's torch classes, defined by `define(torch, nn)` on the first call."""

    def __init__(self, define: Callable[[Any, Any], dict[str, Any]], names: tuple[str, ...]) -> None:
        self.define = define
        self.names = frozenset(names)
        self.home = define.__module__
        self._classes: SimpleNamespace | None = None
        self._lock = threading.Lock()
        ALL.append(self)

    def __call__(self) -> SimpleNamespace:
        if self._classes is None:
            with self._lock:
                if self._classes is None:
                    self._classes = self._define()
        return self._classes

    def _define(self) -> SimpleNamespace:
        import torch  # the one place a family's torch side is imported: at its first build
        from torch import nn

        classes = self.define(torch, nn)
        if set(classes) != self.names:
            raise TypeError(f"{self.home}: @torch_modules names {sorted(self.names)} but the "
                            f"function returns {sorted(classes)}")
        for name, value in classes.items():
            if isinstance(value, type):
                value.__module__ = self.home
                value.__qualname__ = name
        return SimpleNamespace(**classes)


def torch_modules(*names: str) -> Callable[[Callable[[Any, Any], dict[str, Any]]], TorchModules]:
    """Decorator: `define(torch, nn) -> {name: class}` runs on first use; `names` are the keys
    it returns, stated up front so that looking a name up need not import torch to know it."""

    def decorate(define: Callable[[Any, Any], dict[str, Any]]) -> TorchModules:
        return TorchModules(define, names)

    return decorate


def module_getattr(here: str, *sources: TorchModules,
                   moved: dict[str, str] | None = None) -> Callable[[str], Any]:
    """A module `__getattr__` (PEP 562) finding the names of `sources` (defined on first use)
    and of `moved` (name -> the module it now lives in). Any other name is an AttributeError
    without importing torch: `hasattr(module, "__path__")` must stay cheap."""

    def __getattr__(name: str) -> Any:
        for source in sources:
            if name in source.names:
                return getattr(source(), name)
        if moved and name in moved:
            return getattr(importlib.import_module(moved[name]), name)
        raise AttributeError(f"module {here!r} has no attribute {name!r}")

    return __getattr__


def module_classes() -> list[type]:
    """Every torch class the block families define (defining them: this imports torch)."""
    return [value for source in ALL for value in vars(source()).values()
            if isinstance(value, type)]
