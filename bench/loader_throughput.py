"""Frames per second the training loader delivers: 49x144x256 windows from 720p videos, as the HD-VILA runs.

Measures, in one run and on the same files, vtok's loader (seek to the keyframe before each window) with
`--workers` workers, the same in the main process (num_workers=0), and a baseline that decodes every window
from the start of its video; each setting `--repeats` times, interleaved, and reports the medians. Without
`--video_pattern` it writes a few 720p H.264 clips of `--seconds` s with a keyframe every `--gop` frames into
a temporary folder (250 is x264's and ffmpeg's default, which clips cut by ffmpeg have; streaming sites use
1-2 s). Prints a table and writes JSON.

    python bench/loader_throughput.py --samples 24
    python bench/loader_throughput.py --video_pattern 'datasets/hdvila/videos/*.mp4' --workers 8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

from vtok.data import DatasetConfig, LoaderConfig, build_dataloader, set_epoch


def make_videos(
    folder: Path, count: int, seconds: float, fps: int, gop: int, height: int = 720, width: int = 1280
) -> list[Path]:
    """`count` textured, moving 720p clips (H.264 crf 20, a keyframe every `gop` frames, none at scene cuts)."""
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    paths = []
    for v in range(count):
        rng = np.random.default_rng(v)
        noise = rng.normal(0, 5, size=(height, width, 3)).astype(np.float32)
        path = folder / f"clip{v}.mp4"
        with av.open(str(path), mode="w") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"crf": "20", "preset": "veryfast", "g": str(gop), "sc_threshold": "0"}
            for t in range(int(seconds * fps)):
                shift = np.roll(noise, 3 * t, axis=1)
                waves = [np.sin(xx / (40 + 9 * c) + t / 9 + v) + np.cos(yy / 31 - t / 13) for c in range(3)]
                base = np.stack(waves, -1)
                frame = np.clip(base * 60 + 128 + shift, 0, 255).astype(np.uint8)
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode(None))
        paths.append(path)
    return paths


def measure(cfg: LoaderConfig, samples: int, seek: bool) -> dict:
    """Deliver `samples` windows (batch 1); frames/s counted after the first batch, which starts the workers."""
    start = time.perf_counter()
    loader = build_dataloader(cfg, "train", seed=0)
    if not seek:
        for video in loader.dataset.videos:
            video.record.keyframes = []  # in memory only: every window decodes from frame 0
    set_epoch(loader, 0)
    batches = iter(loader)
    first = next(batches)
    first_s = time.perf_counter() - start
    shape = list(first["video"].shape)
    t0 = time.perf_counter()
    frames = 0
    for _ in range(samples):
        try:
            batch = next(batches)
        except StopIteration:
            set_epoch(loader, 1)
            batches = iter(loader)
            batch = next(batches)
        frames += batch["video"].shape[0] * batch["video"].shape[2]
    seconds = time.perf_counter() - t0
    del batches, loader
    return {
        "workers": cfg.num_workers,
        "seek": seek,
        "samples": samples,
        "frames": frames,
        "seconds": round(seconds, 2),
        "frames_per_s": round(frames / seconds, 1),
        "first_batch_s": round(first_s, 2),
        "batch_shape": shape,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video_pattern", default=None, help="real videos (default: generate 720p clips)")
    parser.add_argument("--num_videos", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--gop", type=int, default=250, help="keyframe interval of the generated clips")
    parser.add_argument("--frames", type=int, default=49)
    parser.add_argument("--crop_height", type=int, default=256, help="NVIDIA's long side: 256 -> 256x144 for 16:9")
    parser.add_argument("--name", default="hdvila_video720")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--decode_threads", type=int, default=1)
    parser.add_argument("--samples", type=int, default=24, help="windows measured per setting and run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per setting; the median is reported")
    parser.add_argument("--json", type=Path, default=Path("bench/results/loader_throughput.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="vtok_loader_bench_") as tmp:
        pattern = args.video_pattern
        if pattern is None:
            t0 = time.perf_counter()
            make_videos(Path(tmp), args.num_videos, args.seconds, args.fps, args.gop)
            print(
                f"generated {args.num_videos} clips of {args.seconds:g} s at 1280x720, {args.fps} fps, "
                f"gop {args.gop} in {time.perf_counter() - t0:.0f} s"
            )
            pattern = tmp
        dataset = DatasetConfig(
            name=args.name,
            video_pattern=pattern,
            num_video_frames=args.frames,
            crop_height=args.crop_height,
            val_fraction=0.0,
            decode_threads=args.decode_threads,
            write_manifest=args.video_pattern is None,
        )
        settings = [(args.workers, True), (0, True), (args.workers, False)]
        runs: list[list[dict]] = [[] for _ in settings]
        for _ in range(args.repeats):  # settings interleaved, so a change in machine load hits them all
            for runs_of, (workers, seek) in zip(runs, settings):
                cfg = LoaderConfig(batch_size=1, num_workers=workers, prefetch_factor=2, dataset=dataset)
                runs_of.append(measure(cfg, args.samples if workers else max(4, args.samples // 2), seek))
                print(runs_of[-1], flush=True)
        rows = []
        for runs_of in runs:  # the median run of each setting
            row = dict(sorted(runs_of, key=lambda r: r["frames_per_s"])[len(runs_of) // 2])
            row["frames_per_s_runs"] = [r["frames_per_s"] for r in runs_of]
            rows.append(row)

    base = rows[0]["frames_per_s"]
    print(
        f"\nloader throughput, {args.frames}-frame windows {rows[0]['batch_shape'][-1]}x{rows[0]['batch_shape'][-2]} "
        f"from {'generated 720p' if args.video_pattern is None else args.video_pattern}, "
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), torch {torch.__version__}"
    )
    print(f"{'setting':<34} {'frames/s':>9} {'windows/s':>10} {'first batch s':>14} {'vs vtok':>8}  runs (frames/s)")
    for r in rows:
        label = f"{'seek' if r['seek'] else 'decode from start'}, {r['workers']} workers"
        if r is rows[0]:
            label += " (vtok)"
        print(
            f"{label:<34} {r['frames_per_s']:>9} {r['frames_per_s'] / args.frames:>10.2f} "
            f"{r['first_batch_s']:>14} {r['frames_per_s'] / base:>7.2f}x  {r['frames_per_s_runs']}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp_json = args.json.with_name(f".{args.json.name}.tmp")
    tmp_json.write_text(
        json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "cpus": os.cpu_count(), "rows": rows}, indent=2)
    )
    os.replace(tmp_json, args.json)


if __name__ == "__main__":
    main()
