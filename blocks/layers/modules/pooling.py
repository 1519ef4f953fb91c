"""Moved to `blocks.layers.pooling` (one file per block family); this old path
still finds the names."""

from blocks.core.lazy import moved_to

__getattr__ = moved_to("blocks.layers.pooling", {"GlobalAvgPool"},
                       __name__, warn=True)
