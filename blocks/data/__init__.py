"""Data: bundled offline datasets, CSV/Parquet/NPZ/image-folder reading, tables read in chunks
(`data.stream`), raw rows to features (`features.feature_matrix`), splits (the `data:` spec
itself is `blocks.spec.data`).

May import: `blocks.core`, `blocks.spec`, `blocks.recipe`. Never `builder` or `train`.
"""

from blocks.core.lazy import names_from
from blocks.spec.data import DataSpec

__all__ = ["DataSpec", "Split", "Splits", "load_splits", "prepare_targets"]

# `import blocks.data` stays torch-free: the readers load with the first name used
__getattr__ = names_from(__name__, dict.fromkeys(__all__[1:], "blocks.data.splits"))
