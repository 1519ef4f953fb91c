"""Data: the `data:` spec, bundled offline datasets, CSV/NPZ loading, splits."""

from typing import Any

from blocks.spec.data import DataSpec

__all__ = ["DataSpec", "Split", "Splits", "load_splits", "prepare_targets"]


def __getattr__(name: str) -> Any:
    # blocks.spec.model imports DataSpec from here, and splits imports blocks.spec.model: load splits lazily.
    if name in __all__:
        # lazy: `import blocks.data` stays torch-free
        from blocks.data import splits

        return getattr(splits, name)
    raise AttributeError(f"module 'blocks.data' has no attribute {name!r}")
