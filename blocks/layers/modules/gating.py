"""Moved to `blocks.layers.gating` (one file per block family); this old path
still finds the names."""

from blocks.core.lazy import moved_to

__getattr__ = moved_to("blocks.layers.gating", {"SqueezeExcitation", "ACTIVATIONS"},
                       __name__, warn=True)
