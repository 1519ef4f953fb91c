"""What a model, its data and its training are: the pydantic specs, shapes and counts.

The block registry (`registry`), the model spec (`model`: input, heads, preprocessing, weights
to import), the `data:` and `train:` specs, the `Recipe` that composes them, static shape
inference, exact parameter counts and size limits. Pure data and arithmetic: no torch at import
time (`blocks validate` and `blocks schema` never load it).

May import: `blocks.core`. Never `layers`, `builder`, `data`, `train`, `run` or anything above.
"""

from __future__ import annotations

from blocks.core.lazy import names_from

#: the names this package has always offered, found in the module that now defines them
__getattr__ = names_from(__name__, {
    **dict.fromkeys(("ModelSpec", "InputSpec", "ShapeReport", "SINGLE_HEAD", "ELEMENT_SIZES"),
                    "blocks.spec.model"),
    "Recipe": "blocks.spec.recipe"})
