"""Data: the `data:` spec, bundled offline datasets, CSV/NPZ loading, splits."""

from blocks.data.spec import DataSpec

__all__ = ["DataSpec"]
