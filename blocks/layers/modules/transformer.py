"""Moved to `blocks.layers.transformer` (one file per block family); this old path still finds
the names."""

from blocks.core.lazy import moved_to

__getattr__ = moved_to("blocks.layers.transformer", {
    "PatchEmbed", "ClassToken", "PositionEmbedding", "EncoderLayer", "SelectToken", "TokenMean",
}, __name__, warn=True)
