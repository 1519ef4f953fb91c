"""Small recipes showing the modern-classifier block types; `docs/architectures.md` prints each
with its shape trace (generated, so the shapes shown are the ones inference gives).

The recipes live in their family files (a module-level `EXAMPLE_RECIPES`); this module collects
them from the built-in families, then from the modules of any other registered type (a
plugin's file), so a new type's file is all it takes to appear here.
"""

from __future__ import annotations

import sys
from typing import Any

from blocks.layers import FAMILIES
from blocks.recipe.loading import load_recipe
from blocks.spec.registry import block_types
from blocks.spec.shapes import fmt_shape


def example_recipes() -> dict[str, tuple[str, str]]:
    """title (the block types it shows) -> (what it shows, recipe), built-in families first."""
    modules = dict.fromkeys(f"blocks.layers.{family}" for family in FAMILIES)
    modules.update(dict.fromkeys(cls.__module__ for cls in block_types().values()))
    found: dict[str, tuple[str, str]] = {}
    for name in modules:
        found.update(getattr(sys.modules.get(name), "EXAMPLE_RECIPES", {}))
    return found


def examples_markdown() -> str:
    """Each example recipe with the per-sample shape after every block."""
    parts = ["## Block types for modern classifiers", "",
             "Each recipe below runs as written; the table is its shape inference "
             "(per-sample shapes, batch axis left out).", ""]
    for title, (what, recipe) in example_recipes().items():
        spec = load_recipe(recipe).model
        report = spec.infer_shapes()
        parts += [f"### {', '.join(f'`{name}`' for name in title.split(', '))}", "", what, "",
                  "```yaml", recipe.rstrip(), "```", "",
                  "| block | type | input | output |", "| --- | --- | --- | --- |"]
        parts += [f"| `{t.path}` | {t.block.type} | {fmt_shape(t.input_shape)} | "
                  f"{fmt_shape(t.output_shape)} |" for t in report.layers]
        parts.append("")
    return "\n".join(parts)


def __getattr__(name: str) -> Any:
    if name == "EXAMPLES":  # the dict that used to be written here
        return example_recipes()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
