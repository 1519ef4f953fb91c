"""`torch`, `torch.nn` and `torch.nn.functional`, imported on first attribute use.

The spec side of `blocks` (pydantic models, shape rules, parameter counts) never needs torch:
`blocks validate`, `blocks schema` and `blocks --help` start in a fraction of the 1 s that
`import torch` costs. Spec modules write `nn.Linear(...)` inside `build` exactly as with the real
module; the import happens on the first attribute lookup, which is the first build. The
`nn.Module` subclasses a family defines are written inside a function that runs at the first
build (`blocks.layers.base.torch_modules`).
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands in for a module until an attribute is read; then it is the module's attribute."""

    __slots__ = ("_name", "_loaded")

    def __init__(self, name: str) -> None:
        self._name = name
        self._loaded: ModuleType | None = None

    def _module(self) -> ModuleType:
        if self._loaded is None:
            self._loaded = importlib.import_module(self._name)
        return self._loaded

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._module(), attr)

    def __repr__(self) -> str:
        return f"<lazily imported module {self._name!r}>"


torch: Any = LazyModule("torch")
nn: Any = LazyModule("torch.nn")
F: Any = LazyModule("torch.nn.functional")


def names_from(here: str, homes: dict[str, str], *, warn: bool = False) -> Any:
    """A module `__getattr__` (PEP 562) finding each name of `homes` in its module, imported at
    the first lookup: a package offers names of its submodules without importing them (and
    torch) up front, and an old module still finds names that moved. `warn`: a
    `DeprecationWarning` names the new home at each lookup."""

    def __getattr__(name: str) -> Any:
        module = homes.get(name)
        if module is None:
            raise AttributeError(f"module {here!r} has no attribute {name!r}")
        if warn:
            warnings.warn(f"{here}.{name} moved to {module}.{name}; the old path works until "
                          "the next release", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(module), name)

    return __getattr__


def moved_to(module: str, names: set[str], here: str, *, warn: bool = False) -> Any:
    """`names_from` for names that all moved to one `module`: code written as
    `from blocks.layers.modules.gating import SqueezeExcitation` keeps working, and importing
    the old module still does not import torch."""
    return names_from(here, dict.fromkeys(names, module), warn=warn)
