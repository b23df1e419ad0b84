"""The error types of vtok's file IO: a file that cannot be read as media, and a file that could not be written."""

from __future__ import annotations

import errno
from pathlib import Path


class MediaError(ValueError):
    """A file that cannot be read as the video or image it should be; `path` and `reason` say which and why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


STORAGE_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EFBIG: "the file size limit was reached",
}


def describe_save_error(error: BaseException) -> str:
    """What went wrong writing a file, in words: 'the disk is full ([Errno 28] ...)' or the error itself.

    Writers that report a failed write as another error whose cause or context is the OSError (torch.save's
    RuntimeError, a WriteError) are searched down their chain for the errno."""
    seen: BaseException | None = error
    while seen is not None:
        cause = STORAGE_ERRNOS.get(getattr(seen, "errno", None))
        if cause and not isinstance(seen, WriteError):
            return f"{cause} ({seen})"
        seen = seen.__cause__ or seen.__context__
    return (str(error) or type(error).__name__).strip().splitlines()[0]


def is_storage_full(error: BaseException) -> bool:
    """True when `error` (or what caused it) is a full disk, an exceeded quota or the file size limit: every
    later write would fail the same way."""
    seen: BaseException | None = error
    while seen is not None:
        if getattr(seen, "errno", None) in STORAGE_ERRNOS:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class WriteError(OSError):
    """Writing `path` failed; nothing was written under its name, so a file already there is unchanged.

    An OSError (with the errno of its cause), so callers that catch OSError keep working; its text is one line
    that says which file, why in words, and what is intact."""

    def __init__(self, path: str | Path, cause: BaseException, note: str = "") -> None:
        super().__init__(getattr(cause, "errno", None) or errno.EIO, describe_save_error(cause))
        self.path = Path(path)
        self.reason = describe_save_error(cause)
        self.note = note

    def __str__(self) -> str:
        intact = self.note or "nothing was written under that name (a file already there is unchanged)"
        return f"writing {self.path} failed: {self.reason}; {intact}"
