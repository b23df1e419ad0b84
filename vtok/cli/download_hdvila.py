"""`vtok download-hdvila`: HD-VILA-100M source videos and their clips, resumable, for post-training."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..download.hdvila import JSONL_NAME, JSONL_SOURCE, HdvilaLayout, clip_videos, download_videos, read_plan
from .arg_types import non_negative_float, non_negative_int, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "download-hdvila",
        help="download HD-VILA-100M videos and cut their clips into <dataset_path>/videos/*.mp4",
        description=f"Read <dataset_path>/{JSONL_NAME} (get it from {JSONL_SOURCE}), download the first "
        "--N_videos distinct source videos into videos_orig/ with metas/<clip>.json|.txt for each of their clips "
        "(--do_download), and cut every clip [span_start, span_end) of those videos into videos/<clip>.mp4 "
        "(--do_clip). http(s) URLs are fetched directly; YouTube URLs need yt-dlp (pip install yt-dlp) or "
        "pytubefix. Finished files are skipped, so a rerun continues where an "
        "interrupted one stopped; partial downloads are resumed.",
        epilog="example: vtok download-hdvila --dataset_path datasets/hdvila --N_videos 128 --do_download --do_clip",
    )
    p.add_argument(
        "--dataset_path",
        type=Path,
        default=Path("datasets/hdvila"),
        help=f"folder holding {JSONL_NAME}; everything is written below it (default: datasets/hdvila)",
    )
    p.add_argument(
        "--N_videos", type=positive_int, default=128, help="how many distinct source videos to use (default: 128)"
    )
    p.add_argument("--do_download", action="store_true", help="download the source videos and write the metas")
    p.add_argument("--do_clip", action="store_true", help="cut the clips from the downloaded source videos")
    p.add_argument(
        "--retries", type=non_negative_int, default=3, help="retries per video after a failed attempt (default: 3)"
    )
    p.add_argument(
        "--retry_wait",
        type=non_negative_float,
        default=2.0,
        help="seconds before the first retry, doubled for each further one (default: 2)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not (args.do_download or args.do_clip):
        raise ValueError("nothing to do: pass --do_download and/or --do_clip")
    if args.retries < 0 or args.retry_wait < 0:
        raise ValueError("--retries and --retry_wait must not be negative")
    layout = HdvilaLayout(args.dataset_path)
    plan = read_plan(layout, args.N_videos)
    for problem in plan.problems:
        print(f"vtok: skipped {layout.jsonl.name} {problem}", file=sys.stderr)
    print(
        f"{layout.root}: {len(plan.videos)} source video(s), {len(plan.clips)} clip(s)"
        + (f", {len(plan.problems)} malformed line(s) skipped" if plan.problems else "")
    )
    reports = []
    if args.do_download:
        reports.append(download_videos(plan.videos, layout, args.retries, args.retry_wait))
    if args.do_clip:
        reports.append(clip_videos(plan.videos, layout))
    for report in reports:
        print(report.summary())
    return 1 if any(report.failed for report in reports) else 0
