"""Decoding for `vtok encode` in DataLoader workers: each item is one file's frames (the whole video, or its
fixed-length windows), decoded and resized while the model encodes the previous ones.

An item that cannot be decoded carries the reason instead of raising, so one bad file never stops the loader.
A `lazy` item carries no frames: the main process streams that file through the model itself (bounded memory).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader, Dataset

from ..io import MediaError, iter_frames, probe_video, read_image, resize_short_side
from .per_file import FILE_ERRORS


@dataclass(frozen=True)
class ClipSpec:
    """`--clip_frames F --clip_stride S`: windows of F frames starting every S frames; frames 0: whole files."""

    frames: int = 0
    stride: int = 0

    def starts(self, num_frames: int) -> list[int]:
        """First frame of each window of a video of `num_frames` frames (windows past its end are not taken)."""
        return list(range(0, num_frames - self.frames + 1, self.stride))


@dataclass
class DecodedFile:
    """One input's frames: `windows` (arrays `[T,H,W,3]`, one per window; None for a lazy item) or an `error`."""

    source: Path
    media: str  # "video" or "image"
    fps: str = ""
    source_size: tuple[int, int] = (0, 0)
    num_frames: int = 0  # frames in the file
    starts: list[int] = field(default_factory=list)  # first frame of each window
    windows: list[np.ndarray] | None = None
    error: str | None = None


def clip_windows(frames: Iterable[np.ndarray], spec: ClipSpec) -> tuple[list[np.ndarray], int]:
    """The windows of `spec` over a stream of frames, holding only frames a window still needs; and the count."""
    windows: list[np.ndarray] = []
    held: deque[tuple[int, np.ndarray]] = deque()
    count = 0
    for index, frame in enumerate(frames):
        count += 1
        start = len(windows) * spec.stride
        if index < start:
            continue
        held.append((index, frame))
        if index == start + spec.frames - 1:
            windows.append(np.stack([f for i, f in held if i >= start]))
            start += spec.stride
            while held and held[0][0] < start:
                held.popleft()
    return windows, count


def same_size(frames: Iterable[np.ndarray], short_size: int | None) -> Iterator[np.ndarray]:
    """Frames resized as Pipeline.prepare does (so the pipeline leaves them as they are), one size throughout."""
    first = None
    for frame in frames:
        frame = resize_short_side(frame, short_size) if short_size else frame
        if first is None:
            first = frame.shape
        elif frame.shape != first:
            raise ValueError(f"frame size changed mid-video from {first[:2]} to {frame.shape[:2]}")
        yield frame


class DecodeDataset(Dataset):
    """Item i: `files[i]` decoded as a DecodedFile (see the module docstring)."""

    def __init__(self, files: Sequence[Path], media: str, short_size: int | None, clips: ClipSpec, lazy: bool) -> None:
        self.files = list(files)
        self.media = media
        self.short_size = short_size
        self.clips = clips
        self.lazy = lazy

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> DecodedFile:
        source = self.files[index]
        item = DecodedFile(source, self.media)
        if self.lazy:
            return item
        try:
            if self.media == "image":
                image = read_image(source)
                item.source_size, item.num_frames, item.starts = image.shape[:2], 1, [0]
                item.windows = [next(same_size([image], self.short_size))[None]]
                return item
            info = probe_video(source)
            item.fps = f"{info.fps.numerator}/{info.fps.denominator}"
            item.source_size = (info.height, info.width)
            frames = same_size(iter_frames(source), self.short_size)
            if self.clips.frames:
                item.windows, item.num_frames = clip_windows(frames, self.clips)
                item.starts = self.clips.starts(item.num_frames)
                if not item.windows:
                    item.error = f"{item.num_frames} frames, fewer than --clip_frames {self.clips.frames}"
            else:
                item.windows = [np.stack(list(frames))]
                item.num_frames, item.starts = len(item.windows[0]), [0]
        except MediaError as err:
            item.windows, item.error = None, err.reason
        except FILE_ERRORS as err:
            item.windows, item.error = None, str(err).splitlines()[0]
        return item


def _as_is(item: DecodedFile) -> DecodedFile:
    return item


def decode_loader(dataset: DecodeDataset, num_workers: int, prefetch: int) -> DataLoader:
    """Items in order, decoded by `num_workers` processes (0: in this one), `prefetch` items ahead per worker."""
    return DataLoader(
        dataset,
        batch_size=None,
        shuffle=False,
        num_workers=num_workers,
        prefetch_factor=prefetch if num_workers else None,
        collate_fn=_as_is,
        persistent_workers=False,
    )
