"""HD-VILA-100M clips: read the jsonl, pick source videos, download them once, cut the listed clips.

Layout under the dataset folder (what training reads is `videos/*.mp4`):
`hdvila-100M.jsonl` (input), `videos_orig/<video_id>.mp4` (sources), `videos/<clip>.mp4` (clips, H.264),
`metas/<clip>.json` (the jsonl record) and `metas/<clip>.txt` (its caption). Clips are paired with their
source by `video_id`, never by position. Every file appears under its name only when complete, so a run
skips what exists and an interrupted run loses nothing already finished.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from tqdm import tqdm

from ..io.errors import MediaError
from ..io.video import VideoWriter, probe_video
from .fetch import DownloadError, download

JSONL_NAME = "hdvila-100M.jsonl"
JSONL_SOURCE = "https://huggingface.co/datasets/TempoFunk/hdvila-100M"
REQUIRED_FIELDS = ("url", "video_id", "clip_id", "span_start", "span_end")

_TIME = re.compile(r"(?:(?:(?P<h>\d+):)?(?P<m>\d+):)?(?P<s>\d+(?:\.\d*)?|\.\d+)")


def parse_time(value: str | int | float) -> Fraction:
    """Seconds, exactly, in `HH:MM:SS.fff` (any number of fractional digits), `MM:SS(.fff)` or `SS(.fff)`."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"time {value!r} is not a string or number")
    text = str(value).strip()
    match = _TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"time {value!r} is not HH:MM:SS.fff, MM:SS.fff or seconds")
    hours, minutes = int(match["h"] or 0), int(match["m"] or 0)
    seconds = Fraction(match["s"])
    if (match["m"] is not None and seconds >= 60) or (match["h"] is not None and minutes >= 60):
        raise ValueError(f"time {value!r} has minutes or seconds of 60 or more")
    return hours * 3600 + minutes * 60 + seconds


def _check_name(value: Any, name: str) -> str:
    """A record field used as a file name: non-empty text without folders or a leading dot."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    if "/" in value or "\\" in value or "\0" in value or value.startswith("."):
        raise ValueError(f"{name} {value!r} cannot be used as a file name")
    return value


@dataclass(frozen=True)
class ClipRecord:
    """One jsonl line: which clip, from which video, over which span; `raw` is the record as read."""

    line: int
    url: str
    video_id: str
    clip_id: str
    caption: str
    start: Fraction
    end: Fraction
    raw: dict = field(compare=False, repr=False)

    @property
    def stem(self) -> str:
        """`clip_id` without its `.mp4`, the name of the clip's files."""
        return self.clip_id[:-4] if self.clip_id.lower().endswith(".mp4") else self.clip_id


def parse_record(obj: Any, line: int) -> ClipRecord:
    """A ClipRecord from one decoded jsonl object; ValueError saying what is wrong with it."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    missing = [name for name in REQUIRED_FIELDS if name not in obj]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    url = obj["url"]
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"url must be a non-empty string, got {url!r}")
    start, end = parse_time(obj["span_start"]), parse_time(obj["span_end"])
    if end <= start:
        raise ValueError(f"span_end {obj['span_end']!r} is not after span_start {obj['span_start']!r}")
    caption = obj.get("caption", "")
    return ClipRecord(
        line,
        url.strip(),
        _check_name(obj["video_id"], "video_id"),
        _check_name(obj["clip_id"], "clip_id"),
        caption if isinstance(caption, str) else str(caption),
        start,
        end,
        obj,
    )


def iter_records(path: Path) -> Iterator[ClipRecord | str]:
    """Each line of a jsonl as a ClipRecord, or as a `line N: reason` string when it is malformed."""
    with open(path, encoding="utf-8", errors="replace") as lines:
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            try:
                yield parse_record(json.loads(text), number)
            except json.JSONDecodeError as err:
                yield f"line {number}: not JSON ({err.msg} at column {err.colno})"
            except ValueError as err:
                yield f"line {number}: {err}"


@dataclass
class SourceVideo:
    """One source video and the clips listed for it."""

    video_id: str
    url: str
    clips: list[ClipRecord] = field(default_factory=list)


@dataclass
class Plan:
    """The videos a run works on, and the jsonl lines it skipped."""

    videos: list[SourceVideo]
    problems: list[str]

    @property
    def clips(self) -> list[ClipRecord]:
        return [clip for video in self.videos for clip in video.clips]


def plan_videos(records: Iterator[ClipRecord | str], n_videos: int) -> Plan:
    """The first `n_videos` distinct video ids with all their clips, in file order.

    Reading stops at the first record of video `n_videos + 1` (HD-VILA lists a video's clips together), so a
    128-video run does not parse the whole 100M-line file. A clip_id seen before is reported and skipped.
    """
    if n_videos < 1:
        raise ValueError(f"--N_videos must be at least 1, got {n_videos}")
    videos: dict[str, SourceVideo] = {}
    seen_clips: dict[str, int] = {}
    problems: list[str] = []
    for record in records:
        if isinstance(record, str):
            problems.append(record)
            continue
        if record.video_id not in videos:
            if len(videos) == n_videos:
                break
            videos[record.video_id] = SourceVideo(record.video_id, record.url)
        if record.stem in seen_clips:
            problems.append(
                f"line {record.line}: clip_id {record.clip_id!r} already listed on line {seen_clips[record.stem]}"
            )
            continue
        seen_clips[record.stem] = record.line
        videos[record.video_id].clips.append(record)
    return Plan(list(videos.values()), problems)


@dataclass(frozen=True)
class HdvilaLayout:
    """Where each file of the dataset folder goes."""

    root: Path

    @property
    def jsonl(self) -> Path:
        return self.root / JSONL_NAME

    def source(self, video_id: str) -> Path:
        return self.root / "videos_orig" / f"{video_id}.mp4"

    def clip(self, record: ClipRecord) -> Path:
        return self.root / "videos" / f"{record.stem}.mp4"

    def metas(self, record: ClipRecord) -> tuple[Path, Path]:
        """The clip's record (`.json`) and caption (`.txt`)."""
        return self.root / "metas" / f"{record.stem}.json", self.root / "metas" / f"{record.stem}.txt"


def read_plan(layout: HdvilaLayout, n_videos: int) -> Plan:
    """The plan for the dataset folder's jsonl; FileNotFoundError saying where to get it when it is missing."""
    if not layout.jsonl.is_file():
        raise FileNotFoundError(
            f"{layout.jsonl} not found: download {JSONL_NAME} from {JSONL_SOURCE} into {layout.root}"
        )
    return plan_videos(iter_records(layout.jsonl), n_videos)


@dataclass
class Report:
    """What happened to each item of one stage; skips and failures carry their reason."""

    what: str
    done: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{self.what}: {len(self.done)} done, {len(self.skipped)} skipped, {len(self.failed)} failed"]
        lines += [f"  skipped {count}: {reason}" for reason, count in Counter(r for _, r in self.skipped).items()]
        lines += [f"  failed {name}: {reason}" for name, reason in self.failed]
        return "\n".join(lines)


def _write_text(path: Path, text: str) -> None:
    """Write `text` unless the file already holds it; atomically, so a file is never half written."""
    if path.is_file() and path.read_text(encoding="utf-8", errors="replace") == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_metas(video: SourceVideo, layout: HdvilaLayout) -> None:
    """`metas/<clip>.json` (the record) and `.txt` (the caption) for every clip of `video`."""
    for record in video.clips:
        meta_json, meta_txt = layout.metas(record)
        _write_text(meta_json, json.dumps(record.raw, ensure_ascii=False) + "\n")
        _write_text(meta_txt, record.caption + "\n")


def download_videos(
    videos: list[SourceVideo],
    layout: HdvilaLayout,
    retries: int = 3,
    retry_wait: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Report:
    """Fetch each source video not yet in `videos_orig/` and write the metas of every clip of those present."""
    report = Report("download")
    with tqdm(videos, desc="download", unit="video", dynamic_ncols=True) as bar:
        for video in bar:
            bar.set_postfix_str(video.video_id, refresh=False)
            target = layout.source(video.video_id)
            if target.is_file():
                report.skipped.append((video.video_id, "already downloaded"))
            else:
                try:
                    download(video.url, target, retries=retries, retry_wait=retry_wait, sleep=sleep)
                    report.done.append(video.video_id)
                except (DownloadError, ValueError) as err:
                    reason = err.reason if isinstance(err, DownloadError) else str(err)
                    report.failed.append((video.video_id, f"{video.url}: {reason}"))
                    tqdm.write(f"vtok: download failed {video.video_id}: {reason}")
                    continue
            write_metas(video, layout)
    return report


def _rotate(frame: np.ndarray, degrees: int) -> np.ndarray:
    quarter_turns = (degrees // 90) % 4
    return np.ascontiguousarray(np.rot90(frame, k=quarter_turns)) if quarter_turns else frame


def clip_video(source: Path, target: Path, start: Fraction, end: Fraction) -> int:
    """Cut the frames whose timestamp lies in `[start, end)` seconds into an H.264 mp4 at the source fps.

    Decodes from the keyframe before `start` (a seek), so long sources are not read from their beginning.
    Returns the number of frames written; MediaError when the source cannot be read or the span is empty.
    """
    info = probe_video(source)
    with av.open(str(source)) as container, VideoWriter(target, info.fps) as writer:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        time_base, origin = Fraction(stream.time_base), stream.start_time or 0
        try:
            if start > 0:
                container.seek(origin + int(start / time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                at = (frame.pts - origin) * time_base
                if at >= end:
                    break
                if at >= start:
                    rgb = frame.to_ndarray(format="rgb24")
                    writer.write(_rotate(rgb, int(round(getattr(frame, "rotation", 0) or 0))))
        except av.FFmpegError as err:
            raise MediaError(source, f"decoding failed ({err})") from err
        if writer.frames_written == 0:
            raise MediaError(source, f"no frames in [{float(start):g} s, {float(end):g} s)")
    return writer.frames_written


def clip_videos(videos: list[SourceVideo], layout: HdvilaLayout) -> Report:
    """Cut every clip of `videos` not yet in `videos/` from its own source video."""
    report = Report("clip")
    clips = [(video, record) for video in videos for record in video.clips]
    with tqdm(clips, desc="clip", unit="clip", dynamic_ncols=True) as bar:
        for video, record in bar:
            bar.set_postfix_str(record.stem, refresh=False)
            target, source = layout.clip(record), layout.source(video.video_id)
            if target.is_file():
                report.skipped.append((record.clip_id, "already clipped"))
            elif not source.is_file():
                report.skipped.append((record.clip_id, "source video not downloaded (see --do_download)"))
            else:
                try:
                    clip_video(source, target, record.start, record.end)
                    report.done.append(record.clip_id)
                except (MediaError, ValueError, OSError) as err:
                    reason = err.reason if isinstance(err, MediaError) else str(err).splitlines()[0]
                    report.failed.append((record.clip_id, f"{source.name}: {reason}"))
                    tqdm.write(f"vtok: clip failed {record.clip_id}: {reason}")
    return report
