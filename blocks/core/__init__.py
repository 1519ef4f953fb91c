"""Leaf helpers every stage shares: errors, the lazy torch handle, number types, atomic files,
tensor digests, size limits, the version.

Imports nothing from the rest of `blocks`, and never torch at import time.
"""
