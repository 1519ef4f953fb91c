"""Moved to `blocks.layers.axes` (`LayerNorm2d` to `blocks.layers.norm`), one file per block
family; this old path still finds the names."""

from blocks.core.lazy import moved_to

_axes = moved_to("blocks.layers.axes", {"Permute", "Reshape"}, __name__, warn=True)
_norm = moved_to("blocks.layers.norm", {"LayerNorm2d"}, __name__, warn=True)


def __getattr__(name: str) -> object:  # noqa: F811 - LayerNorm2d went to the norm family
    return _norm(name) if name == "LayerNorm2d" else _axes(name)
