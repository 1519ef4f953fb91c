"""Moved to `blocks.layers.branches` (one file per block family); this old path
still finds the names."""

from blocks.core.lazy import moved_to

__getattr__ = moved_to("blocks.layers.branches", {"ConcatModule", "DenseConcatModule"},
                       __name__, warn=True)
