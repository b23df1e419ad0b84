"""`vtok index`: probe every video once and write the manifest that training start-up reads."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..data.manifest import MANIFEST_NAME, find_videos, index_videos
from .arg_types import positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "index",
        help="probe videos once (frames, fps, size, codec, readable?) and write a manifest for training",
        description="Probe every video (frame count by demuxing, fps, size, codec, keyframes, or why it is "
        f"unreadable) and write {MANIFEST_NAME} in each video folder, so training start-up does not open every "
        "file on every rank. Unchanged files (same size and mtime) are reused from an existing manifest.",
    )
    p.add_argument("inputs", nargs="+", metavar="DIR_OR_GLOB", help="folders of videos or glob patterns")
    p.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"write one manifest for all inputs here (default: {MANIFEST_NAME} in each video folder; "
        "a dataset reads it when its config sets dataset.manifest)",
    )
    p.add_argument("--workers", type=positive_int, default=min(8, os.cpu_count() or 1), help="probing threads")
    p.add_argument(
        "--num_video_frames",
        type=positive_int,
        default=None,
        help="also count the videos shorter than one window of this many frames",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    paths = find_videos(args.inputs)
    result = index_videos(paths, manifest_path=args.output, workers=args.workers)
    unreadable = result.unreadable
    readable = [r for r in result.records.values() if r.readable]
    frames = sum(r.num_frames or 0 for r in readable)
    print(
        f"{len(paths)} files: {len(readable)} readable videos ({frames} frames), {len(unreadable)} unreadable; "
        f"{result.probed} probed, {result.reused} unchanged since the last index"
    )
    if args.num_video_frames:
        short = {
            p: r.num_frames or 0
            for p, r in result.records.items()
            if r.readable and (r.num_frames or 0) < args.num_video_frames
        }
        print(f"{len(short)} readable videos are shorter than {args.num_video_frames} frames")
        for path, frames in short.items():
            print(f"  short {path}: {frames} frames")
    for path, reason in unreadable.items():
        print(f"  unreadable {path}: {reason}")
    for manifest in result.written:
        print(f"wrote {manifest}")
    for manifest, reason in result.not_written:
        print(f"could not write {manifest}: {reason}")
    return 1 if result.not_written else 0
