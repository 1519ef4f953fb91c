"""Shared by the hostile-input tests: user files hashed before and after, a tiny recipe, and a
small full filesystem (a tmpfs when this machine lets us mount one)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

TINY = ("model:\n  input: {shape: [4]}\n  backbone: [{type: linear, out_features: 8}, relu]\n"
        "  head: {type: softmax, classes: 2}\ndata: {synthetic: {samples: 32}}\n"
        "train: {epochs: 1, batch_size: 16}\n")


def hashes(*roots: Path) -> dict[str, str]:
    """sha256 of every file under `roots` (what a refused command must leave as it was)."""
    out = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str = "64k") -> Iterator[Path | None]:
    """A tmpfs of `size` mounted at `where` (None when mounting is not allowed here: the caller
    then simulates ENOSPC instead)."""
    where.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                              capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        done = None
    if done is None or done.returncode != 0:
        yield None
        return
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=20)


def fill(folder: Path) -> None:
    """Write a filler file in `folder` until its filesystem is full."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as err:
        assert err.errno == errno.ENOSPC, err
    finally:
        os.close(fd)
