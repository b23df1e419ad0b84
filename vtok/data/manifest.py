"""A JSON manifest of what each video holds, probed once, so training start-up does not open every file.

`vtok index` (or a dataset's first start-up) probes every video: size, fps, frame count (by demuxing, without
decoding), codec, and the frame index and timestamp of each keyframe, which lets a window be decoded by
seeking. Unreadable files are kept with the reason. The manifest lives next to the videos
(`<folder>/vtok_manifest.json`, keyed by the path relative to its folder) and remembers each file's size
and mtime: a changed file is probed again, an unchanged one is reused. Copying a dataset without keeping
mtimes (`cp` without `-p`) makes the next start-up probe everything once more.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import av
from tqdm import tqdm

from ..io import VIDEO_SUFFIXES, MediaError, expand_patterns, probe_video

MANIFEST_NAME = "vtok_manifest.json"
MANIFEST_FORMAT = "vtok-video-manifest"
MANIFEST_VERSION = 1

log = logging.getLogger(__name__)


@dataclass
class VideoRecord:
    """What probing one file found; `readable` False with a `reason` for a file that is not a usable video."""

    size: int
    mtime_ns: int
    readable: bool
    reason: str | None = None
    num_frames: int | None = None  # counted from the demuxed packets
    fps: str | None = None  # exact, as "num/den"
    width: int | None = None  # as displayed (after rotation)
    height: int | None = None
    codec: str | None = None
    rotation: int = 0
    keyframes: list[list[int]] = field(default_factory=list)  # [frame index, pts]; [] if the stream has no pts

    @property
    def fps_value(self) -> float:
        """The fps as a float (24 when the file did not say, as vtok.io does)."""
        return float(Fraction(self.fps)) if self.fps else 24.0

    def is_current(self, stat: os.stat_result) -> bool:
        """True when the file still has the size and mtime it had when probed."""
        return self.size == stat.st_size and self.mtime_ns == stat.st_mtime_ns


def _count_packets(path: Path) -> tuple[int, list[list[int]]]:
    """Frames (non-empty packets of the first video stream) and [index, pts] of each keyframe, without decoding."""
    pts_all: list[int] = []
    key_pts: list[int] = []
    timestamps_ok = True
    try:
        with av.open(str(path), mode="r") as container:
            stream = container.streams.video[0]
            for packet in container.demux(stream):
                if not packet.size:
                    continue
                if packet.pts is None:
                    timestamps_ok = False
                    pts_all.append(0)
                    continue
                pts_all.append(packet.pts)
                if packet.is_keyframe:
                    key_pts.append(packet.pts)
    except av.FFmpegError as err:
        raise MediaError(path, f"corrupt or truncated ({getattr(err, 'strerror', None) or err})") from err
    if not timestamps_ok:
        return len(pts_all), []
    pts_all.sort()
    return len(pts_all), [[bisect.bisect_left(pts_all, pts), pts] for pts in sorted(set(key_pts))]


def probe_record(path: str | Path) -> VideoRecord:
    """Probe one file; never raises for bad media (the record says why it is unreadable)."""
    path = Path(path)
    stat = path.stat()
    try:
        info = probe_video(path)
        num_frames, keyframes = _count_packets(path)
    except MediaError as err:
        return VideoRecord(stat.st_size, stat.st_mtime_ns, False, err.reason)
    if num_frames == 0:
        return VideoRecord(stat.st_size, stat.st_mtime_ns, False, "no video frames")
    return VideoRecord(
        stat.st_size,
        stat.st_mtime_ns,
        True,
        None,
        num_frames,
        f"{info.fps.numerator}/{info.fps.denominator}",
        info.width,
        info.height,
        info.codec,
        info.rotation,
        keyframes,
    )


class Manifest:
    """The records of one manifest file, keyed by each video's path relative to the manifest's folder."""

    def __init__(self, path: Path, records: dict[str, VideoRecord] | None = None) -> None:
        self.path = Path(path).resolve()
        self.records = records or {}
        self.changed = False

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        """The manifest at `path`; an empty one when it is missing, or unreadable (it is then rewritten)."""
        path = Path(path)
        if not path.exists():
            return cls(path)
        try:
            data = json.loads(path.read_text())
            if data.get("format") != MANIFEST_FORMAT or data.get("version") != MANIFEST_VERSION:
                raise ValueError(f"not a version-{MANIFEST_VERSION} {MANIFEST_FORMAT}")
            records = {key: VideoRecord(**value) for key, value in data["videos"].items()}
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
            log.warning("ignoring manifest %s (%s); the videos are probed again", path, err)
            return cls(path)
        return cls(path, records)

    def key(self, video: Path) -> str:
        return Path(os.path.relpath(Path(video).resolve(), self.path.parent)).as_posix()

    def current(self, video: Path, stat: os.stat_result) -> VideoRecord | None:
        """The record of `video` if the file has not changed since it was probed."""
        record = self.records.get(self.key(video))
        return record if record is not None and record.is_current(stat) else None

    def put(self, video: Path, record: VideoRecord) -> None:
        self.records[self.key(video)] = record
        self.changed = True

    def prune(self) -> None:
        """Forget files that no longer exist."""
        gone = [k for k in self.records if not (self.path.parent / k).exists()]
        for key in gone:
            del self.records[key]
        self.changed = self.changed or bool(gone)

    def save(self) -> None:
        """Write the manifest atomically (a temporary file, then a rename)."""
        lines = [f"  {json.dumps(key)}: {json.dumps(asdict(self.records[key]))}" for key in sorted(self.records)]
        text = (
            f'{{"format": "{MANIFEST_FORMAT}", "version": {MANIFEST_VERSION}, "videos": {{\n'
            + ",\n".join(lines)
            + "\n}}\n"
        )
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        try:
            tmp.write_text(text)
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)
        self.changed = False


@dataclass
class IndexResult:
    """Records of the indexed videos, how many were probed or reused, and the manifests written."""

    records: dict[Path, VideoRecord]
    probed: int
    reused: int
    written: list[Path]
    not_written: list[tuple[Path, str]]

    @property
    def unreadable(self) -> dict[Path, str]:
        return {p: r.reason or "unreadable" for p, r in self.records.items() if not r.readable}


def find_videos(patterns: str | Path | Sequence[str | Path]) -> list[Path]:
    """Files matched by globs or folders (see vtok.io.expand_patterns), without vtok's own manifests."""
    patterns = [patterns] if isinstance(patterns, (str, Path)) else list(patterns)
    return [p for p in expand_patterns([str(p) for p in patterns], VIDEO_SUFFIXES) if p.name != MANIFEST_NAME]


def default_manifest_path(video: Path) -> Path:
    """Where a video's manifest lives unless one is named: `vtok_manifest.json` in its folder."""
    return Path(video).resolve().parent / MANIFEST_NAME


def index_videos(
    paths: Sequence[Path],
    manifest_path: str | Path | None = None,
    workers: int = 8,
    write: bool = True,
    progress: bool = True,
) -> IndexResult:
    """Records for `paths`: reused from their manifests when the files are unchanged, else probed (in `workers`
    threads, with a progress bar) and saved back. A manifest that cannot be written is reported, not fatal."""
    manifests: dict[Path, Manifest] = {}
    owner: dict[Path, Manifest] = {}
    for video in paths:
        where = Path(manifest_path).resolve() if manifest_path else default_manifest_path(video)
        if where not in manifests:
            manifests[where] = Manifest.load(where)
        owner[Path(video)] = manifests[where]
    records: dict[Path, VideoRecord] = {}
    stale: list[Path] = []
    for video, manifest in owner.items():
        record = manifest.current(video, video.stat())
        if record is None:
            stale.append(video)
        else:
            records[video] = record
    reused = len(records)
    if stale:
        with (
            ThreadPoolExecutor(max(1, workers)) as pool,
            tqdm(
                total=len(stale), desc="probing videos", unit="video", disable=not progress, dynamic_ncols=True
            ) as bar,
        ):
            for video, record in zip(stale, pool.map(probe_record, stale)):
                records[video] = record
                owner[video].put(video, record)
                bar.update()
    written: list[Path] = []
    not_written: list[tuple[Path, str]] = []
    for manifest in manifests.values():
        manifest.prune()
        if not (write and manifest.changed):
            continue
        try:
            manifest.save()
            written.append(manifest.path)
        except OSError as err:
            not_written.append((manifest.path, err.strerror or str(err)))
            log.warning(
                "cannot write manifest %s (%s); start-up will probe these videos again",
                manifest.path,
                err.strerror or err,
            )
    return IndexResult({p: records[Path(p)] for p in paths}, len(stale), reused, written, not_written)
