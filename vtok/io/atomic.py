"""Atomic file writes: a file appears under its name only when complete, so no reader sees half of one.

Every file vtok writes goes through here (or through VideoWriter, which follows the same rules): the temporary file
is created by Python's `open`, so it gets the mode the user's umask gives any new file, and a failed write (a full
disk, a quota, the file size limit) is a `WriteError` naming the file, with no temporary left behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import WriteError


def temporary_name(path: Path) -> Path:
    """The hidden temporary beside `path` a write goes to first (same suffix, so format-by-suffix writers work)."""
    return path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` (same suffix) to write to; renamed to `path` on success, removed on error.

    A write that fails for want of space (or any OSError, also one a library wraps in its own error) is re-raised
    as WriteError naming `path`."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except WriteError:
        raise
    except Exception as err:
        if not _has_os_error(err):
            raise
        raise WriteError(path, err) from err
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # its folder could not be made: there is nothing to remove
            pass


def _has_os_error(error: BaseException) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def write_bytes_atomic(path: str | Path, data: bytes, durable: bool = False) -> Path:
    """Write `data` to `path` atomically; `durable` also flushes it to the disk before the rename (so a crashed
    machine never leaves a renamed but empty file)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
        if durable:
            handle.flush()
            os.fsync(handle.fileno())
    return path


def write_files_atomic(files: dict[Path, bytes], durable: bool = False) -> list[Path]:
    """Write several files as one: every temporary first, then the renames, so a failed write (a full disk) leaves
    none of them replaced and no set half old, half new; the WriteError names the file that failed."""
    written: list[Path] = []
    try:
        for path, data in files.items():
            tmp = temporary_name(Path(path))
            written.append(tmp)
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                with open(tmp, "wb") as handle:
                    handle.write(data)
                    if durable:
                        handle.flush()
                        os.fsync(handle.fileno())
            except OSError as err:
                unchanged = ", ".join(str(p) for p in files)
                raise WriteError(path, err, f"no file was replaced ({unchanged} are as they were)") from err
        for path in files:
            os.replace(temporary_name(Path(path)), path)
    finally:
        for tmp in written:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
    return [Path(p) for p in files]
