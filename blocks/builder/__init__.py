"""Specs to modules: `BlocksModel` and `build`, device placement, weights import.

May import: `blocks.core`, `blocks.spec`, `blocks.recipe`, `blocks.layers`. Never `data`,
`train`, `run`, `inspect`, `exporters`, `cli`.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {"BlocksModel": "model", "build": "model", "Output": "model"}


def __getattr__(name: str) -> Any:  # torch loads with the first name used, not with the package
    if name in _NAMES:
        return getattr(importlib.import_module(f"blocks.builder.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'blocks.builder' has no attribute {name!r}")
