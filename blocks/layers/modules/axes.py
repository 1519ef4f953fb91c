"""Moved to `blocks.layers.axes` (`LayerNorm2d` to `blocks.layers.norm`), one file per block
family; this old path still finds the names."""

from blocks.core.lazy import names_from

__getattr__ = names_from(__name__, {"Permute": "blocks.layers.axes", "Reshape": "blocks.layers.axes",
                                    "LayerNorm2d": "blocks.layers.norm"}, warn=True)
