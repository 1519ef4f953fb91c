"""Pure shape arithmetic shared by static inference and runtime checks (one rule, two uses).

Shapes here are *per-sample*: the batch dimension is never included.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from blocks.core.errors import ShapeError

Shape = tuple[int, ...]


def fmt_shape(shape: Sequence[int | None]) -> str:
    return "[" + ", ".join("N" if d is None else str(d) for d in shape) + "]"


def expand(value: int | Sequence[int], n: int, name: str) -> tuple[int, ...]:
    """`3` -> `(3, 3)`; a list must already have `n` entries."""
    if isinstance(value, int):
        return (value,) * n
    value = tuple(value)
    if len(value) != n:
        raise ShapeError(f"{name} must be an int or a list of {n} ints, got {list(value)}")
    return value


def require_rank(shape: Shape, rank: int, layout: str) -> None:
    if len(shape) != rank:
        raise ShapeError(
            f"expects input of rank {rank} per sample ({layout}), got {fmt_shape(shape)}"
        )


def conv_output_length(
    length: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1,
    *, ceil_mode: bool = False, what: str = "kernel",
) -> int:
    """Length of one spatial axis after a convolution or pooling window (torch's formula)."""
    effective = dilation * (kernel - 1) + 1
    span = length + 2 * padding - effective
    # ceil_mode keeps a last window that overhangs the padded input, as long as one fits at all
    if span < 0 and not (ceil_mode and span + stride - 1 >= 0):
        raise ShapeError(
            f"{what} size {effective} is larger than its padded input {length + 2 * padding}"
            f" (input {length}, padding {padding})"
        )
    if ceil_mode:
        out = math.ceil(span / stride) + 1
        # torch: the last window must start inside the input or its left padding
        if (out - 1) * stride >= length + padding:
            out -= 1
        return out
    return span // stride + 1


def same_padding(kernel: int, dilation: int) -> tuple[int, int]:
    total = dilation * (kernel - 1)
    return total // 2, total - total // 2
