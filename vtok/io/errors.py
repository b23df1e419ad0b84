"""The one error type of media IO, so callers can skip a bad file and name it."""

from __future__ import annotations

from pathlib import Path


class MediaError(ValueError):
    """A file that cannot be read as the video or image it should be; `path` and `reason` say which and why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason
