"""Number and shape formatting shared by the summary table and the comparison table.

Both print the same kinds of cells (a batch shape, a parameter count, a signed delta), so they
share one spelling of each: `?` for an unknown value, thousands separators, `N` for the batch.
"""

from __future__ import annotations

from collections.abc import Sequence

from blocks.spec.shapes import fmt_shape


def fmt_batch_shape(shape: Sequence[int] | None) -> str:
    """A per-sample shape shown with its batch axis: `[N, 32, 26, 26]`; `?` when unknown."""
    return "?" if shape is None else fmt_shape([None, *shape])


def fmt_count(value: int | None) -> str:
    """`1,234,567`; `?` when unknown."""
    return "?" if value is None else f"{value:,}"


def fmt_signed(value: int) -> str:
    """A delta with its sign (`+1,024`, `-3`), or `0`."""
    return f"{value:+,}" if value else "0"


def fmt_human(n: int) -> str:
    """`1.23 M`: a large count at a glance."""
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return str(n)


def fmt_mb(n: int) -> str:
    """Bytes as megabytes (10^6), as torchinfo prints them."""
    return f"{n / 1e6:.2f} MB"
