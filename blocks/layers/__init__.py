"""Every built-in block type, one file per family (timm's `layers/` habit); importing this
package registers them all. A family file holds everything about its types: the spec (fields,
shape rule, parameter count), the `nn.Module` it builds (a named `torch.nn` class, or its own
class defined on first use by `blocks.layers.base.torch_modules`), that module's Python-source
emitter (`emit_source`) and the documented examples. docs/contributing.md: add a block type.

May import: `blocks.core`, `blocks.spec`, `blocks.recipe`. Never `builder`, `data`, `train`,
`run`, `exporters` or anything above; no torch at import time.
"""

from blocks.layers import (  # noqa: F401 - registration
    activations,
    axes,
    branches,
    catalogue,
    combiners,
    composites,
    conv,
    embedding,
    external,
    gating,
    linear,
    norm,
    pooling,
    regularize,
    text,
    transformer,
)

#: the built-in family files, in the order docs/architectures.md shows their example recipes
FAMILIES = ("branches", "gating", "norm", "axes", "transformer", "linear", "conv", "pooling",
            "activations", "regularize", "embedding", "composites", "external")

__all__ = [*FAMILIES, "FAMILIES", "catalogue"]
