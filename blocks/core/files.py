"""Atomic file writes: a crash never leaves a half-written file under the final name."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, fsync it, then rename over `path`."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


# --- staging folders: a multi-file write that appears under its final names only when done -------
STAGING_SUFFIX = ".staging"


def staging_folder(target: Path) -> Path:
    """A fresh hidden folder beside `target` (`.NAME.PID.RANDOM.staging`) to write into before
    moving the result in place. Folders that a killed process (kill -9) left there are removed
    first; the pid in the name says whose a folder is."""
    remove_stale_staging(target.parent)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=STAGING_SUFFIX,
                                 dir=target.parent))


def is_staging_name(name: str) -> bool:
    return name.startswith(".") and name.endswith(STAGING_SUFFIX) and _staging_pid(name) is not None


def _staging_pid(name: str) -> int | None:
    parts = name.removesuffix(STAGING_SUFFIX).split(".")
    return int(parts[-2]) if len(parts) >= 4 and parts[-2].isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # someone else's process (or not ours to judge): leave its folder
    return True


def remove_stale_staging(folder: Path) -> list[Path]:
    """Delete the staging folders in `folder` whose process is gone; returns what was removed."""
    import shutil

    removed = []
    try:
        entries = list(folder.glob(f".*{STAGING_SUFFIX}"))
    except OSError:
        return removed
    for entry in entries:
        pid = _staging_pid(entry.name)
        if pid is None or pid == os.getpid() or _alive(pid) or not entry.is_dir() \
                or entry.is_symlink():
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed
