"""Image files one by one, going on past the bad ones: what `blocks validate` checks of an image
folder (bounded in files and seconds) and what `blocks predict --skip-bad-files` reads.

Each file is decoded by `blocks.data.images.decode_image`, exactly as training decodes it, so a
file refused here is a file training refuses, and one read here gives training's pixels.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from blocks.data.images import IMAGE_SUFFIXES, BadImageError, decode_image

CHECK_FILES = 2000  # `blocks validate` decodes at most this many files of a folder ...
CHECK_SECONDS = 10.0  # ... and stops after about this long; the output says when it stopped


@dataclass
class ImageCheck:
    """What checking a folder's files found: how many were decoded, the bad ones (file, reason)
    and, when not every file was decoded, the limit that stopped it."""

    total: int
    checked: int = 0
    bad: list[tuple[Path, str]] = field(default_factory=list)
    stopped_by: str | None = None  # e.g. "2,000 files" or "10 s"

    @property
    def complete(self) -> bool:
        return self.checked == self.total


def check_image_files(files: Sequence[Path], shape: tuple[int, int, int], resize: str, *,
                      max_files: int | None = None, max_seconds: float | None = None,
                      seed: int = 0) -> ImageCheck:
    """Decode up to `max_files` of `files` (for at most about `max_seconds`) as training would
    (defaults: `CHECK_FILES`, `CHECK_SECONDS`).

    Files are visited in a seeded random order, so a partial check samples every class folder
    rather than the first few; bad files are listed in path order.
    """
    max_files = CHECK_FILES if max_files is None else max_files
    max_seconds = CHECK_SECONDS if max_seconds is None else max_seconds
    order = list(range(len(files)))
    random.Random(seed).shuffle(order)
    check = ImageCheck(total=len(files))
    deadline = time.monotonic() + max_seconds
    for i in order:
        if check.checked >= max_files:
            check.stopped_by = f"{max_files:,} files"
            break
        if time.monotonic() > deadline:
            check.stopped_by = f"{max_seconds:g} s"
            break
        try:
            decode_image(files[i], shape, resize)
        except BadImageError as err:
            check.bad.append((files[i], str(err)))
        check.checked += 1
    check.bad.sort()
    return check


def decode_skipping(files: Sequence[Path], shape: tuple[int, int, int], resize: str
                    ) -> tuple[list[torch.Tensor], list[Path], list[tuple[Path, str]]]:
    """Every file decoded as training decodes it: (uint8 images, their files, bad files with the
    reason), the good ones in the order given."""
    images, good, bad = [], [], []
    for path in files:
        try:
            images.append(decode_image(path, shape, resize))
        except BadImageError as err:
            bad.append((path, str(err)))
        else:
            good.append(path)
    return images, good, bad


def image_files(path: Path) -> list[Path]:
    """The files `blocks predict` reads from PATH: the file itself, or a folder's image files
    (by suffix, recursively, sorted), as `blocks.data.images.read_images` lists them."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
