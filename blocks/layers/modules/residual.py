"""Moved to `blocks.layers.composites` (one file per block family); this old path
still finds the names."""

from blocks.core.lazy import moved_to

__getattr__ = moved_to("blocks.layers.composites", {"ResidualModule"},
                       __name__, warn=True)
