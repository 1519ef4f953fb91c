"""Where the block types' `nn.Module` classes used to live, kept so old imports still work.

Each class now lives in its family's file (`blocks.layers.gating.SqueezeExcitation`, ...),
defined on first use so the family imports without torch; these modules find them there and
warn with a `DeprecationWarning` naming the new place.
"""
