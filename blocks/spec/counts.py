"""Parameter and buffer counts from the spec alone: the arithmetic of the layers torch builds.

Each block type's `parameter_count(shape)` says how many parameters and buffer values the
module its `build(shape)` makes would hold, without building it and without importing torch,
so the size check inside `blocks.build` and `blocks validate` cost microseconds. `None` means
"unknown" (a plugin without the rule, a `torch` layer, a library backbone): `budget.footprint`
then builds that one block on the `meta` device and counts. The rules here are torch's own
layers' (tests/spec/test_param_counts.py holds every block type to a real build).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from blocks.spec.registry import Block
    from blocks.spec.shapes import Shape

#: (parameters, buffer values) of one module.
Counts = tuple[int, int]
NOTHING: Counts = (0, 0)


def linear(in_features: int, out_features: int, bias: bool = True) -> Counts:
    """`nn.Linear`: weight `[out, in]`, bias `[out]`."""
    return in_features * out_features + (out_features if bias else 0), 0


def conv(in_channels: int, out_channels: int, kernel: Sequence[int], groups: int = 1,
         bias: bool = True) -> Counts:
    """`nn.Conv1d`/`nn.Conv2d`: weight `[out, in / groups, *kernel]`, bias `[out]`."""
    return (out_channels * (in_channels // groups) * math.prod(kernel)
            + (out_channels if bias else 0)), 0


def batchnorm(channels: int, affine: bool, track_running_stats: bool) -> Counts:
    """`nn.BatchNorm*d`: weight and bias when affine; running mean, running variance and the
    one-value `num_batches_tracked` when it tracks running statistics."""
    return (2 * channels if affine else 0), (2 * channels + 1 if track_running_stats else 0)


def layernorm(elements: int, elementwise_affine: bool, bias: bool) -> Counts:
    """`nn.LayerNorm` over `elements` values: a weight, and a bias too, when affine."""
    if not elementwise_affine:
        return NOTHING
    return elements * (2 if bias else 1), 0


def total(parts: Iterable[Counts | None]) -> Counts | None:
    """The sum of `parts`, or None when any part is unknown."""
    params = buffers = 0
    for part in parts:
        if part is None:
            return None
        params, buffers = params + part[0], buffers + part[1]
    return params, buffers


def sequence(blocks: Sequence[Block], shape: Shape) -> tuple[Counts | None, Shape]:
    """Counts of `blocks` applied in order to per-sample `shape` (None if any block's are
    unknown), and the output shape (the input shape when the counts are unknown)."""
    params = buffers = 0
    for block in blocks:
        found = of(block, shape)
        if found is None:
            return None, shape
        params, buffers = params + found[0], buffers + found[1]
        shape = block.output_shape(shape)
    return (params, buffers), shape


def of(block: Block, shape: Shape) -> Counts | None:
    """`block.parameter_count(shape)` when the rule describes the module its `build` makes.

    A subclass that overrides `build` but not `parameter_count` (a plugin deriving from a
    built-in type) would inherit a rule for another module: unknown, then, not wrong.
    """
    return block.parameter_count(shape) if _rule_fits(type(block)) else None


@functools.cache
def _rule_fits(cls: type) -> bool:
    build = next(c for c in cls.__mro__ if "build" in vars(c))
    rule = next(c for c in cls.__mro__ if "parameter_count" in vars(c))
    return issubclass(rule, build) or (_ours(rule) and _ours(build))


def _ours(cls: type) -> bool:
    return cls.__module__.startswith("blocks.")
