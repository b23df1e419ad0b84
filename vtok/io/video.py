"""Video files through PyAV: exact frame counts, the source fps, rotation metadata, atomic H.264 output.

Frames are uint8 RGB arrays `[H, W, 3]`: grayscale is expanded, alpha dropped, and the stream's display
rotation applied, so a frame looks as a player shows it. Reading streams frame by frame, so memory does
not grow with the video's length.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .atomic import temporary_name
from .errors import MediaError, WriteError

DEFAULT_CRF = 18
VTOK_COMMENT = "written by vtok"  # the container's comment tag in every mp4 vtok writes


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds, read from its container without decoding every frame."""

    path: Path
    width: int  # as displayed, i.e. after rotation
    height: int
    fps: Fraction
    num_frames: int | None  # as the container reports it; None when it does not say
    codec: str
    rotation: int  # counter-clockwise degrees applied to every decoded frame


def _open(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise MediaError(path, "no such file")
    if path.stat().st_size == 0:
        raise MediaError(path, "empty file")
    try:
        return av.open(str(path), mode="r")
    except av.FFmpegError as err:
        raise MediaError(path, f"not a readable video ({getattr(err, 'strerror', None) or err})") from err


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "no streams"
        raise MediaError(path, f"no video stream (found {kinds})")
    return container.streams.video[0]


def _fps(stream: av.video.stream.VideoStream) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return Fraction(rate) if rate else Fraction(24)


def _rotation_of(stream: av.video.stream.VideoStream, container: av.container.InputContainer) -> int:
    """The display rotation, read from the first decoded frame (where FFmpeg puts the display matrix)."""
    for frame in container.decode(stream):
        return int(round(getattr(frame, "rotation", 0) or 0))
    return 0


def _rotate(frame: np.ndarray, degrees: int) -> np.ndarray:
    quarter_turns = (degrees // 90) % 4
    return np.ascontiguousarray(np.rot90(frame, k=quarter_turns)) if quarter_turns else frame


def probe_video(path: str | Path) -> VideoInfo:
    """Size, fps, reported frame count, codec and rotation of `path`; MediaError when it is not a video."""
    path = Path(path)
    with _open(path) as container:
        stream = _video_stream(container, path)
        try:
            rotation = _rotation_of(stream, container)
        except av.FFmpegError as err:
            raise MediaError(path, f"cannot decode its first frame ({err})") from err
        width, height = stream.codec_context.width, stream.codec_context.height
        if (rotation // 90) % 2:
            width, height = height, width
        return VideoInfo(path, width, height, _fps(stream), stream.frames or None, stream.codec_context.name, rotation)


def is_vtok_video(path: str | Path) -> bool:
    """True when `path` is an mp4 that vtok wrote (its container's comment says so): an output vtok may replace."""
    try:
        with av.open(str(path), mode="r") as container:
            return container.metadata.get("comment") == VTOK_COMMENT
    except (av.FFmpegError, OSError):
        return False


def iter_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Every frame of `path` in order, as uint8 RGB `[H, W, 3]`; MediaError on a file that cannot be decoded."""
    path = Path(path)
    with _open(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                rgb = frame.to_ndarray(format="rgb24")
                yield _rotate(rgb, int(round(getattr(frame, "rotation", 0) or 0)))
        except av.FFmpegError as err:
            raise MediaError(path, f"decoding failed ({err})") from err


def read_video(path: str | Path) -> tuple[np.ndarray, VideoInfo]:
    """All frames `[T, H, W, 3]` uint8 and the video's info (for short clips; long ones: `iter_frames`)."""
    info = probe_video(path)
    frames = list(iter_frames(path))
    if not frames:
        raise MediaError(info.path, "no decodable frames")
    return np.stack(frames), info


class VideoWriter:
    """Writes uint8 RGB frames to an H.264 mp4 at `fps`; the file appears under its name only when complete.

    Even sizes use yuv420p (what every player reads); odd sizes, which yuv420p cannot hold, use yuv444p.
    Use as a context manager: on an exception the partial file is removed.
    """

    def __init__(self, path: str | Path, fps: Fraction | float, crf: int = DEFAULT_CRF) -> None:
        self.path = Path(path)
        self.fps = Fraction(fps).limit_denominator(1_000_000)
        self.crf = crf
        self.frames_written = 0
        # the temporary keeps an mp4 suffix even when the target has none: FFmpeg picks its muxer by it
        self._tmp = temporary_name(self.path if self.path.suffix else self.path.with_name(self.path.name + ".mp4"))
        self._container: av.container.OutputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None

    def _start(self, height: int, width: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self._tmp), mode="w", format="mp4")
        self._container.metadata["comment"] = VTOK_COMMENT
        stream = self._container.add_stream("libx264", rate=self.fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        stream.options = {"crf": str(self.crf)}
        self._stream = stream

    def write(self, frames: np.ndarray) -> None:
        """Append one frame `[H, W, 3]` or several `[T, H, W, 3]` (uint8 RGB)."""
        frames = frames[None] if frames.ndim == 3 else frames
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"VideoWriter takes uint8 RGB frames [T,H,W,3], got {frames.dtype} {list(frames.shape)}")
        try:
            if self._stream is None:
                self._start(frames.shape[1], frames.shape[2])
            assert self._container is not None and self._stream is not None
            if (frames.shape[1], frames.shape[2]) != (self._stream.height, self._stream.width):
                raise ValueError(
                    f"{self.path}: frame size {frames.shape[1:3]} differs from the first frame's "
                    f"{(self._stream.height, self._stream.width)}"
                )
            for rgb in frames:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                self._container.mux(self._stream.encode(frame))
        except OSError as err:  # a full disk, the size limit, a folder that cannot be made
            self.abort()
            raise WriteError(self.path, err) from err
        self.frames_written += len(frames)

    def close(self) -> Path:
        """Flush the encoder and move the finished file to its name."""
        if self._container is None or self.frames_written == 0:
            self.abort()
            raise ValueError(f"{self.path}: no frames were written")
        assert self._stream is not None
        try:
            self._container.mux(self._stream.encode(None))
            self._container.close()
            self._container = None
            os.replace(self._tmp, self.path)
        except OSError as err:
            self.abort()
            raise WriteError(self.path, err) from err
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Drop what was written so far."""
        if self._container is not None:
            try:
                self._container.close()
            except av.FFmpegError:
                pass
            self._container = None
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(path: str | Path, frames: np.ndarray, fps: Fraction | float, crf: int = DEFAULT_CRF) -> Path:
    """Write `[T, H, W, 3]` uint8 frames as an H.264 mp4, atomically."""
    with VideoWriter(path, fps, crf) as writer:
        writer.write(frames)
    return Path(path)
