"""Bounds on a table, checked before the expensive work: the width of a header, the length of
one line, the distinct values of a categorical column. Each has a default far above a real
table and an environment variable to raise it (docs/data.md, "Limits"), so a hostile or
mistaken file (100,000 columns, 2 GB without a newline, a million categories) is refused in
moments with a message naming the limit, instead of after minutes and gigabytes.
"""

from __future__ import annotations

import os
from pathlib import Path

from blocks.core.errors import Problem, SpecError

DEFAULT_MAX_COLUMNS = 20_000
DEFAULT_MAX_LINE_BYTES = 16 * 2**20
DEFAULT_MAX_CATEGORIES = 100_000


def _limit(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise SpecError(Problem("", f"environment variable {name}={raw!r} must be a positive "
                                "whole number", "bad_limit"))
    return value


def max_columns() -> int:
    """`BLOCKS_MAX_COLUMNS`, default 20,000."""
    return _limit("BLOCKS_MAX_COLUMNS", DEFAULT_MAX_COLUMNS)


def max_line_bytes() -> int:
    """`BLOCKS_MAX_LINE_BYTES`, default 16 MiB: the longest row of a CSV file."""
    return _limit("BLOCKS_MAX_LINE_BYTES", DEFAULT_MAX_LINE_BYTES)


def read_threads() -> int:
    """`BLOCKS_READ_THREADS`, default the cores this process may run on (at most 4): the threads
    that parse a training table's pieces and place its rows."""
    if os.environ.get("BLOCKS_READ_THREADS", "").strip():
        return _limit("BLOCKS_READ_THREADS", 1)
    try:
        cores = len(os.sched_getaffinity(0))  # a container's or taskset's cores, not the host's
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def max_categories() -> int:
    """`BLOCKS_MAX_CATEGORIES`, default 100,000 distinct values in one categorical column."""
    return _limit("BLOCKS_MAX_CATEGORIES", DEFAULT_MAX_CATEGORIES)


def check_columns(count: int, where: str, path: Path) -> None:
    limit = max_columns()
    if count > limit:
        raise SpecError(Problem(where, f"{path.name} has {count:,} columns, more than the limit of "
                                f"{limit:,}; set BLOCKS_MAX_COLUMNS to raise it", "too_many_columns"))


def line_too_long(path: Path, where: str, line: int = 1) -> SpecError:
    limit = max_line_bytes()
    return SpecError(Problem(where, f"{path.name} line {line} is longer than the limit of "
                             f"{limit:,} bytes (no line end found); set BLOCKS_MAX_LINE_BYTES to "
                             "raise it", "line_too_long"))


def check_categories(count: int, column: str, where: str, path: Path) -> None:
    limit = max_categories()
    if count > limit:
        raise SpecError(Problem(where, f"{path.name}: column {column!r} has {count:,} distinct "
                                f"values, more than the limit of {limit:,} categories; set "
                                "BLOCKS_MAX_CATEGORIES to raise it", "too_many_categories"))
