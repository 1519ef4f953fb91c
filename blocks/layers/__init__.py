"""Every built-in block type, one module per family (timm's `layers/` habit); importing this
package registers them all. Each type is a spec (its fields, shape rule, parameter count) and
builds its `nn.Module` from `torch.nn` or from `blocks.layers.modules` at the first build.

May import: `blocks.core`, `blocks.spec`, `blocks.recipe`. Never `builder`, `data`, `train`,
`run`, `exporters` or anything above; no torch at import time.
"""

from blocks.layers import (  # noqa: F401 - registration
    axes,
    branches,
    catalogue,
    composites,
    external,
    gating,
    regularize,
    transformer,
)

__all__ = ["axes", "branches", "catalogue", "composites", "external", "gating", "regularize",
           "transformer"]
