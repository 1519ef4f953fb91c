"""Atomic file writes: a crash never leaves a half-written file under the final name."""

from __future__ import annotations

import errno
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from blocks.core.errors import BlocksError, escape_name


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


class WriteError(BlocksError, OSError):
    """A file that could not be written (no space, no permission, read-only); whatever was at
    its name before is still there, whole."""


#: errno values that are about the place written to, not about blocks
_PLACE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR,
                 errno.EISDIR, errno.ENOENT, errno.EEXIST, errno.EFBIG, errno.ENAMETOOLONG}


def place_problem(err: BaseException) -> str | None:
    """The reason as words when `err` says the disk or folder refused a write (an `OSError`, or a
    writer library's own error carrying `os error 28`), else None."""
    if isinstance(err, OSError) and err.errno in _PLACE_ERRORS:
        return err.strerror or os.strerror(err.errno)
    match = re.search(r"os error (\d+)", str(err))
    if match and int(match.group(1)) in _PLACE_ERRORS:
        return os.strerror(int(match.group(1)))
    return None


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, fsync it, then rename over `path`.
    A full disk or a folder that refuses the write is a `WriteError` naming `path`."""
    target = Path(path)
    tmp: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, target)
    except BaseException as err:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        reason = place_problem(err) if isinstance(err, Exception) else None
        if reason is None or isinstance(err, BlocksError):
            raise
        raise WriteError(f"{escape_name(target)}: cannot be written ({reason}); what was there "
                         "before is unchanged") from None
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
