"""What a model, its data and its training are: the pydantic specs, shapes and counts.

The block registry (`registry`), the model spec (`model`: input, heads, preprocessing, weights
to import), the `data:` and `train:` specs, the `Recipe` that composes them, static shape
inference, exact parameter counts and size limits. Pure data and arithmetic: no torch at import
time (`blocks validate` and `blocks schema` never load it).

May import: `blocks.core`. Never `layers`, `builder`, `data`, `train`, `run` or anything above.
"""

from __future__ import annotations

import importlib
from typing import Any

#: the names this package has always offered, found in the module that now defines them
_NAMES = {"ModelSpec": "model", "InputSpec": "model", "ShapeReport": "model",
          "SINGLE_HEAD": "model", "ELEMENT_SIZES": "model", "Recipe": "recipe"}


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(importlib.import_module(f"blocks.spec.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'blocks.spec' has no attribute {name!r}")
