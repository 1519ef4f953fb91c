"""Moved to `blocks.layers.regularize` (one file per block family); this old path
still finds the names."""

from blocks.core.lazy import moved_to

__getattr__ = moved_to("blocks.layers.regularize", {"DropPath", "LayerScale"},
                       __name__, warn=True)
