"""Bounds on what a recipe may ask for, so hostile or mistaken input fails fast and small.

Each limit that a legitimate user might need to raise reads an environment variable (documented
in docs/recipes.md, "Limits"); the others are fixed far above any real recipe.
"""

from __future__ import annotations

import functools
import os

from blocks.core.errors import Problem, SpecError

#: Recipe files larger than this are refused before parsing (bytes).
DEFAULT_MAX_RECIPE_BYTES = 10_000_000
#: Blocks in a model after `repeat` is expanded (nested blocks included).
DEFAULT_MAX_BLOCKS = 10_000
#: Most repetitions one `repeat` block may ask for.
MAX_REPEAT_TIMES = 10_000
#: Most composite blocks (`residual`, `repeat`, ...) nested inside one another.
MAX_BLOCK_NESTING = 64
#: Most values in one sample's tensor anywhere in a model (keeps torch's int64 sizes safe).
MAX_SAMPLE_ELEMENTS = 2**40
#: Most nested YAML collections (mappings / lists inside one another).
MAX_YAML_DEPTH = 100
#: Most YAML values a recipe may hold once aliases are expanded ("billion laughs" stop here).
MAX_YAML_NODES = 200_000


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip().replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise SpecError(Problem("", f"environment variable {name}={raw!r} must be a positive "
                                "whole number of bytes or blocks", "bad_limit"))
    return value


def max_recipe_bytes() -> int:
    """`BLOCKS_MAX_RECIPE_BYTES`, default 10 MB."""
    return _env_int("BLOCKS_MAX_RECIPE_BYTES", DEFAULT_MAX_RECIPE_BYTES)


def max_blocks() -> int:
    """`BLOCKS_MAX_BLOCKS`, default 10,000."""
    return _env_int("BLOCKS_MAX_BLOCKS", DEFAULT_MAX_BLOCKS)


@functools.cache  # read once: `blocks.build` checks against it on every call
def machine_memory() -> int | None:
    """Memory this process may use in bytes: physical memory, or a smaller container (cgroup)
    limit; None where the OS does not say."""
    try:
        physical: int | None = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        physical = None
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path, encoding="ascii") as handle:
                limit = int(handle.read().strip())
        except (OSError, ValueError):  # absent, or "max" (no limit)
            continue
        if 0 < limit < (physical or limit + 1):
            physical = limit
    return physical


def max_model_bytes() -> int | None:
    """`BLOCKS_MAX_MODEL_BYTES`, default the machine's physical memory (None: unknown, no check)."""
    return _env_int("BLOCKS_MAX_MODEL_BYTES", machine_memory() or 0) or None


def human_bytes(count: int) -> str:
    for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if count >= size:
            return f"{count / size:,.1f} {unit}"
    return f"{count} bytes"
