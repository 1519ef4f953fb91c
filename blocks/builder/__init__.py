"""Specs to modules: `BlocksModel` and `build`, device placement, weights import.

May import: `blocks.core`, `blocks.spec`, `blocks.recipe`, `blocks.layers`. Never `data`,
`train`, `run`, `inspect`, `exporters`, `cli`.
"""

from __future__ import annotations

from blocks.core.lazy import names_from

# torch loads with the first name used, not with the package
__getattr__ = names_from(__name__, dict.fromkeys(("BlocksModel", "build", "Output"),
                                                 "blocks.builder.model"))
