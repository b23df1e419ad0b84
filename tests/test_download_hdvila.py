"""`vtok download-hdvila` against a loopback HTTP server (started here) serving small generated mp4s."""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT
from loopback_http import file_server

import vtok.io as vio
from vtok.cli import download_hdvila
from vtok.download.fetch import DownloadError, HttpDownloader, download, downloader_for
from vtok.download.hdvila import HdvilaLayout, iter_records, parse_time, plan_videos

FPS, SECONDS, HEIGHT, WIDTH = 10, 4, 48, 64
COLOURS = {"vidB": (200, 30, 30), "vidA": (30, 200, 30), "vidC": (30, 30, 200)}

CLI_SCRIPT = """
import argparse, sys
from vtok.cli import download_hdvila
parser = argparse.ArgumentParser(prog="vtok")
download_hdvila.register(parser.add_subparsers())
args = parser.parse_args(sys.argv[1:])
try:
    sys.exit(args.func(args))
except (ValueError, FileNotFoundError) as err:
    print(f"vtok: error: {err}", file=sys.stderr)
    sys.exit(1)
"""


# --- time parsing -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("01:02:03.456", Fraction("3723.456")),  # HH:MM:SS.mmm (the reference added the fraction twice)
        ("00:00:01.5", Fraction(3, 2)),  # one fractional digit (the reference read it as 5 ms)
        ("00:00:01.05", Fraction(21, 20)),  # two digits
        ("00:10:00.123456", Fraction("600.123456")),  # more than three digits
        ("00:00:07", Fraction(7)),  # no fraction
        ("12:34", Fraction(754)),  # MM:SS
        ("02:03.25", Fraction("123.25")),  # MM:SS.ff
        ("75.5", Fraction(151, 2)),  # plain seconds, 60 or more
        ("9", Fraction(9)),
        (12.25, Fraction(49, 4)),  # a JSON number
    ],
)
def test_parse_time(text, seconds):
    assert parse_time(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "-1", "1:2:3:4", "00:60", "00:60:00", "00:00:1e3", True])
def test_parse_time_rejects(text):
    with pytest.raises(ValueError):
        parse_time(text)


# --- fixtures: source videos, a loopback server, a jsonl ----------------------------------------------------


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, bytes]:
    """One solid-colour mp4 per video id, plus an unreadable file served as mp4."""
    folder = tmp_path_factory.mktemp("sources")
    files = {}
    for video_id, colour in COLOURS.items():
        frames = np.empty((FPS * SECONDS, HEIGHT, WIDTH, 3), np.uint8)
        frames[:] = colour
        files[video_id] = vio.write_video(folder / f"{video_id}.mp4", frames, FPS).read_bytes()
    files["corrupt"] = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40
    return files


@pytest.fixture
def server():
    with file_server() as httpd:
        yield httpd


def write_jsonl(path: Path, lines: list[dict | str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))


def record(base: str, video_id: str, clip_id: str, start: str, end: str, **extra: object) -> dict:
    return {
        "url": f"{base}/{video_id}.mp4",
        "video_id": video_id,
        "clip_id": clip_id,
        "caption": f"caption of {clip_id}",
        "span_start": start,
        "span_end": end,
        **extra,
    }


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vtok")
    download_hdvila.register(parser.add_subparsers())
    return parser.parse_args(["download-hdvila", *argv])


def expected_frames(start: str, end: str) -> int:
    """Frames of a FPS source, SECONDS long, whose timestamp lies in [start, end)."""
    return sum(parse_time(start) <= Fraction(k, FPS) < parse_time(end) for k in range(FPS * SECONDS))


# --- the command ---------------------------------------------------------------------------------------------


def test_download_and_clip_pair_by_video_id_and_resume(tmp_path, server, sources, capsys):
    for video_id in COLOURS:
        server.routes[f"/{video_id}.mp4"] = ("file", sources[video_id])
    base = server.base
    # Sorted clip ids and sorted video ids would pair wrongly by position; vidB's clips are not adjacent.
    clips = [
        record(base, "vidB", "zz_clip.mp4", "00:00:00.000", "00:00:01.500", extra_field=[1, 2]),
        record(base, "vidA", "aa_clip.mp4", "00:00:01.0", "00:00:02.75"),
        record(base, "vidB", "mm_clip.mp4", "2.25", "00:03.9"),
        record(base, "vidC", "bb_clip.mp4", "00:00:03.000", "00:00:10.000"),  # runs past the source's end
    ]
    write_jsonl(
        tmp_path / "hdvila-100M.jsonl",
        [
            clips[0],
            clips[1],
            "{not json",
            clips[2],
            {"video_id": "vidC", "clip_id": "x.mp4", "span_start": "0", "span_end": "1"},  # no url
            record(base, "vidC", "y.mp4", "00:00:02", "00:00:01"),  # end before start
            clips[3],
        ],
    )
    common = ["--dataset_path", str(tmp_path), "--retries", "0"]

    # 1) two videos, download only: every clip of those two gets its metas, nothing is cut yet
    assert download_hdvila.run(parse(*common, "--N_videos", "2", "--do_download")) == 0
    out, err = capsys.readouterr()
    assert "download: 2 done, 0 skipped, 0 failed" in out
    assert all(f"line {n}:" in err for n in (3, 5, 6)), err
    assert sorted(p.name for p in (tmp_path / "videos_orig").iterdir()) == ["vidA.mp4", "vidB.mp4"]
    assert sorted(p.name for p in (tmp_path / "metas").iterdir()) == [
        "aa_clip.json",
        "aa_clip.txt",
        "mm_clip.json",
        "mm_clip.txt",
        "zz_clip.json",
        "zz_clip.txt",
    ]
    assert json.loads((tmp_path / "metas" / "zz_clip.json").read_text()) == clips[0]
    assert (tmp_path / "metas" / "mm_clip.txt").read_text() == "caption of mm_clip.mp4\n"
    assert not (tmp_path / "videos").exists()

    # 2) all videos, download and clip, as a user runs it (a subprocess; the server is this process)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            CLI_SCRIPT,
            "download-hdvila",
            *common,
            "--N_videos",
            "10",
            "--do_download",
            "--do_clip",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "download: 1 done, 2 skipped, 0 failed" in result.stdout
    assert "clip: 4 done, 0 skipped, 0 failed" in result.stdout
    assert "3 malformed line(s) skipped" in result.stdout
    for clip in clips:
        frames, info = vio.read_video(tmp_path / "videos" / clip["clip_id"])
        span_frames = float(parse_time(clip["span_end"]) - parse_time(clip["span_start"])) * FPS
        assert info.fps == FPS and (info.height, info.width) == (HEIGHT, WIDTH)
        assert len(frames) == expected_frames(clip["span_start"], clip["span_end"])
        if clip["clip_id"] != "bb_clip.mp4":
            assert abs(len(frames) - span_frames) <= 1
        mean = frames.reshape(-1, 3).mean(0)
        assert np.abs(mean - COLOURS[clip["video_id"]]).max() < 12, (clip["clip_id"], mean)
    assert len(frames) == 10  # bb_clip: 3 s to the end of the 4 s source

    # 3) a rerun finds everything done: no request, no file rewritten
    requests = len(server.requests)
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    assert download_hdvila.run(parse(*common, "--do_download", "--do_clip")) == 0
    out, _ = capsys.readouterr()
    assert "download: 0 done, 3 skipped, 0 failed\n  skipped 3: already downloaded" in out
    assert "clip: 0 done, 4 skipped, 0 failed\n  skipped 4: already clipped" in out
    assert len(server.requests) == requests
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == mtimes


def test_http_errors_and_corrupt_files_are_retried_then_failed_never_recorded(tmp_path, server, sources, capsys):
    server.routes.update(
        {
            "/gone.mp4": ("status", 404),
            "/broken.mp4": ("status", 500),
            "/corrupt.mp4": ("file", sources["corrupt"]),
            "/vidA.mp4": ("file", sources["vidA"]),
        }
    )
    base = server.base
    write_jsonl(
        tmp_path / "hdvila-100M.jsonl",
        [
            record(base, "gone", "gone_0.mp4", "0", "1"),
            record(base, "broken", "broken_0.mp4", "0", "1"),
            record(base, "corrupt", "corrupt_0.mp4", "0", "1"),
            record(base, "vidA", "a_0.mp4", "0", "1"),
        ],
    )
    args = parse("--dataset_path", str(tmp_path), "--retries", "2", "--retry_wait", "0", "--do_download", "--do_clip")
    assert download_hdvila.run(args) == 1
    out, _ = capsys.readouterr()
    assert "download: 1 done, 0 skipped, 3 failed" in out
    assert re.search(r"failed gone: \S+/gone.mp4: HTTP 404", out)
    assert re.search(r"failed broken: \S+/broken.mp4: HTTP 500", out)
    assert re.search(r"failed corrupt: \S+/corrupt.mp4: not a readable video", out)
    assert "clip: 1 done, 3 skipped, 0 failed\n  skipped 3: source video not downloaded" in out
    for path in ("/gone.mp4", "/broken.mp4", "/corrupt.mp4"):
        assert sum(p == path for p, _ in server.requests) == 3  # the first try and two retries
    assert sorted(p.name for p in (tmp_path / "videos_orig").iterdir()) == ["vidA.mp4"]  # no .part either
    assert sorted(p.name for p in (tmp_path / "metas").iterdir()) == ["a_0.json", "a_0.txt"]


def test_backoff_doubles_between_attempts(tmp_path, server):
    server.routes["/broken.mp4"] = ("status", 503)
    waits: list[float] = []
    with pytest.raises(DownloadError, match="HTTP 503"):
        download(f"{server.base}/broken.mp4", tmp_path / "b.mp4", retries=3, retry_wait=0.5, sleep=waits.append)
    assert waits == [0.5, 1.0, 2.0]
    assert not (tmp_path / "b.mp4").exists()


def test_dropped_connection_is_resumed_with_a_range_request(tmp_path, server, sources):
    data = sources["vidB"]
    server.routes["/vidB.mp4"] = ("drop_once", data)
    target = download(f"{server.base}/vidB.mp4", tmp_path / "vidB.mp4", retries=2, retry_wait=0, sleep=lambda s: None)
    assert target.read_bytes() == data
    assert server.requests == [("/vidB.mp4", None), ("/vidB.mp4", f"bytes={len(data) // 2}-")]
    assert not (tmp_path / "vidB.mp4.part").exists()


def test_interrupted_download_continues_from_its_part_file(tmp_path, server, sources):
    data = sources["vidC"]
    server.routes["/vidC.mp4"] = ("file", data)
    (tmp_path / "vidC.mp4.part").write_bytes(data[:1000])  # what an interrupted run leaves
    download(f"{server.base}/vidC.mp4", tmp_path / "vidC.mp4", retries=0)
    assert (tmp_path / "vidC.mp4").read_bytes() == data
    assert server.requests == [("/vidC.mp4", "bytes=1000-")]
    (tmp_path / "again.mp4.part").write_bytes(data)  # complete but not yet moved: the server says 416
    download(f"{server.base}/vidC.mp4", tmp_path / "again.mp4", retries=0)
    assert (tmp_path / "again.mp4").read_bytes() == data
    assert server.requests[-1] == ("/vidC.mp4", f"bytes={len(data)}-")


def test_downloader_is_picked_by_url():
    assert isinstance(downloader_for("https://example.org/v.mp4"), HttpDownloader)
    for url in ("https://www.youtube.com/watch?v=abc", "https://youtu.be/abc", "http://m.youtube.com/watch?v=a"):
        assert not isinstance(downloader_for(url), HttpDownloader)
    with pytest.raises(ValueError, match="unsupported URL"):
        downloader_for("ftp://example.org/v.mp4")


@pytest.mark.skipif(
    any(importlib.util.find_spec(m) for m in ("yt_dlp", "pytubefix")), reason="yt-dlp or pytubefix is installed"
)
def test_youtube_without_yt_dlp_fails_with_the_install_hint(tmp_path, capsys):
    write_jsonl(
        tmp_path / "hdvila-100M.jsonl",
        [
            {
                "url": "https://www.youtube.com/watch?v=abcdefghijk",
                "video_id": "abcdefghijk",
                "clip_id": "abcdefghijk_0.mp4",
                "caption": "c",
                "span_start": "0:00:01.0",
                "span_end": "0:00:02.0",
            }
        ],
    )
    assert download_hdvila.run(parse("--dataset_path", str(tmp_path), "--do_download", "--retry_wait", "0")) == 1
    out, _ = capsys.readouterr()
    failed = [line for line in out.splitlines() if line.strip().startswith("failed")]
    assert len(failed) == 1 and failed[0].endswith("pip install yt-dlp"), out
    assert not (tmp_path / "metas").exists()


def test_missing_jsonl_and_nothing_to_do_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"hdvila-100M.jsonl.*huggingface.co/datasets/TempoFunk/hdvila-100M"):
        download_hdvila.run(parse("--dataset_path", str(tmp_path), "--do_download"))
    with pytest.raises(ValueError, match="--do_download and/or --do_clip"):
        download_hdvila.run(parse("--dataset_path", str(tmp_path)))


def test_plan_stops_after_n_videos_and_skips_duplicate_clips(tmp_path):
    base = "http://127.0.0.1:9"
    write_jsonl(
        tmp_path / "d.jsonl",
        [
            record(base, "v1", "c1.mp4", "0", "1"),
            record(base, "v1", "c2.mp4", "1", "2"),
            record(base, "v2", "c1.mp4", "0", "1"),
            record(base, "v2", "c3.mp4", "0", "1"),
            record(base, "v3", "c4.mp4", "0", "1"),
            "{broken",
        ],
    )
    plan = plan_videos(iter_records(tmp_path / "d.jsonl"), 2)
    assert [(v.video_id, [c.clip_id for c in v.clips]) for v in plan.videos] == [
        ("v1", ["c1.mp4", "c2.mp4"]),
        ("v2", ["c3.mp4"]),
    ]
    assert plan.problems == ["line 3: clip_id 'c1.mp4' already listed on line 1"]  # line 6 is never read
    assert HdvilaLayout(tmp_path).clip(plan.videos[0].clips[0]) == tmp_path / "videos" / "c1.mp4"
