"""Decode exactly the frames of one window, seeking to the keyframe before it instead of decoding from the start.

The manifest knows each keyframe's frame index and timestamp. The reader seeks to the last keyframe at or
before the window's first frame, checks that the decoder really starts there (pts equal), counts frames
forward from it, and keeps only the wanted ones. If the seek lands anywhere else it decodes from the
start instead, so the frames are always the ones `vtok.io.iter_frames` yields at those indices.

Converting a whole 720p frame to RGB costs about as much as a third of decoding it; when only a crop is
wanted, `frame_to_rgb` converts just that region of a yuv420p frame, with the same result to the bit.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from ..io import MediaError

Region = tuple[int, int, int, int]  # top, left, height, width
FrameConverter = Callable[[av.VideoFrame], np.ndarray]
_CROPPABLE = ("yuv420p", "yuvj420p")


def rotation_of(frame: av.VideoFrame) -> int:
    """Counter-clockwise degrees a player turns this frame by (its display matrix)."""
    return int(round(getattr(frame, "rotation", 0) or 0))


def display_size(frame: av.VideoFrame) -> tuple[int, int]:
    """(H, W) of the frame as displayed, i.e. after its rotation."""
    return (frame.width, frame.height) if (rotation_of(frame) // 90) % 2 else (frame.height, frame.width)


def _plane(frame: av.VideoFrame, index: int, height: int, width: int) -> np.ndarray:
    plane = frame.planes[index]
    return np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:height, :width]


def _crop_yuv420(frame: av.VideoFrame, region: Region) -> np.ndarray | None:
    """RGB of `region` only: crop the planes on the chroma grid, convert, trim to the exact region (None
    when the region, widened to the chroma grid, leaves an odd-sized frame)."""
    top, left, height, width = region
    t0, l0 = top - top % 2, left - left % 2
    h0, w0 = (top + height + 1) // 2 * 2 - t0, (left + width + 1) // 2 * 2 - l0
    if t0 + h0 > frame.height or l0 + w0 > frame.width:
        return None
    luma = _plane(frame, 0, frame.height, frame.width)[t0 : t0 + h0, l0 : l0 + w0]
    chroma = [
        _plane(frame, i, (frame.height + 1) // 2, (frame.width + 1) // 2)[
            t0 // 2 : (t0 + h0) // 2, l0 // 2 : (l0 + w0) // 2
        ]
        for i in (1, 2)
    ]
    packed = np.concatenate([luma.reshape(-1)] + [c.reshape(-1) for c in chroma]).reshape(h0 * 3 // 2, w0)
    small = av.VideoFrame.from_ndarray(packed, format=frame.format.name)
    small.colorspace, small.color_range = frame.colorspace, frame.color_range
    return small.to_ndarray(format="rgb24")[top - t0 : top - t0 + height, left - l0 : left - l0 + width]


def frame_to_rgb(frame: av.VideoFrame, region: Region | None = None) -> np.ndarray:
    """uint8 RGB `[H, W, 3]` as displayed (rotation applied), or only `region` of it (top, left, height,
    width in displayed pixels); an unrotated yuv420p frame converts only the region."""
    rotation = rotation_of(frame)
    if region is not None and not rotation and frame.format.name in _CROPPABLE:
        cropped = _crop_yuv420(frame, region)
        if cropped is not None:
            return np.ascontiguousarray(cropped)
    rgb = frame.to_ndarray(format="rgb24")
    quarter_turns = (rotation // 90) % 4
    if quarter_turns:
        rgb = np.rot90(rgb, k=quarter_turns)
    if region is not None:
        top, left, height, width = region
        rgb = rgb[top : top + height, left : left + width]
    return np.ascontiguousarray(rgb)


@dataclass
class DecodedWindow:
    """The wanted frames (after `convert`) and the index of the first frame the decoder produced."""

    frames: list[np.ndarray]
    decoded_from: int


class _SeekMissed(Exception):
    """The decoder did not start at the keyframe the seek aimed at."""


def _decode(
    path: Path, frame_ids: Sequence[int], keyframe: tuple[int, int | None], threads: int, convert: FrameConverter
) -> DecodedWindow:
    key_index, key_pts = keyframe
    frames: list[np.ndarray] = []
    wanted = iter(frame_ids)
    next_id = next(wanted)
    index: int | None = None
    with av.open(str(path), mode="r") as container:
        if not container.streams.video:
            raise MediaError(path, "no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        if key_index > 0:
            container.seek(key_pts, stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            if index is None:
                if key_index > 0:
                    if frame.pts is not None and frame.pts < key_pts:
                        continue  # leading pictures of an open GOP, output before their keyframe
                    if frame.pts != key_pts:
                        raise _SeekMissed
                index = key_index
            if index == next_id:
                frames.append(convert(frame))
                next_id = next(wanted, None)
                if next_id is None:
                    return DecodedWindow(frames, key_index)
            index += 1
    ended = "no frames" if index is None else f"{index} frames"
    raise MediaError(path, f"the video ended after {ended}, the window needs frame {frame_ids[-1]}")


def read_window(
    path: str | Path,
    frame_ids: Sequence[int],
    keyframes: Sequence[Sequence[int]] = (),
    threads: int = 0,
    convert: FrameConverter = frame_to_rgb,
) -> DecodedWindow:
    """Frames `frame_ids` (increasing indices) of `path`, each turned into an array by `convert` as it is
    decoded (default: the whole frame as uint8 RGB `[H, W, 3]`), so only converted frames are held.
    `keyframes` are [index, pts] pairs from the manifest; without them the video is decoded from its start.
    MediaError when it fails."""
    path = Path(path)
    if not frame_ids or list(frame_ids) != sorted(set(frame_ids)) or frame_ids[0] < 0:
        raise ValueError(f"frame_ids must be increasing, distinct and non-negative, got {list(frame_ids)[:8]}...")
    position = bisect.bisect_right([k[0] for k in keyframes], frame_ids[0]) - 1
    keyframe = (int(keyframes[position][0]), int(keyframes[position][1])) if position >= 0 else (0, None)
    try:
        try:
            return _decode(path, frame_ids, keyframe, threads, convert)
        except _SeekMissed:
            return _decode(path, frame_ids, (0, None), threads, convert)
    except av.FFmpegError as err:
        raise MediaError(path, f"decoding failed ({getattr(err, 'strerror', None) or err})") from err
    except FileNotFoundError as err:
        raise MediaError(path, "no such file") from err
