"""Peak memory and time of `vtok autoencode` on a long high-resolution video, per window/tile setting.

Each setting runs in its own process (so peak RSS is its own); weights are random (memory and time do not
depend on their values) and frames are generated on the fly (so the input video does not count).
Prints a table with ratios against the first setting and writes JSON.

    python bench/autoencode_memory.py --frames 121 --height 720 --width 1280 \
        --settings 17:0 49:16 49:16:368x640
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

import vtok
from vtok.inference import Pipeline, TokenizerEngine


def frames(count: int, height: int, width: int):
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    for t in range(count):
        yield (np.stack([np.sin(xx / 40 + t / 5 + c) for c in range(3)], -1) * 100 + 128).astype(np.uint8)


def child(args: argparse.Namespace) -> dict:
    window, overlap, *tile = args.setting.split(":")
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    tok = vtok.build_tokenizer(args.model).eval().to(device=device, dtype=dtype)
    engine = TokenizerEngine(tok.name, tok.config, device, dtype, "torch", tok.encode, tok.decode)
    tile_hw = tuple(int(v) for v in tile[0].split("x")) if tile else None
    pipeline = Pipeline(engine, temporal_window=int(window), temporal_overlap=int(overlap), tile=tile_hw)
    rss_model = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    count = sum(1 for _ in pipeline.autoencode(frames(args.frames, args.height, args.width)))
    seconds = time.perf_counter() - start
    result = {
        "setting": args.setting,
        "frames": count,
        "seconds": round(seconds, 1),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "rss_after_load_gib": round(rss_model, 2),
    }
    if device.type == "cuda":
        result["peak_cuda_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="CV8x8x8-720p")
    parser.add_argument("--frames", type=int, default=121)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16" if torch.cuda.is_available() else "float32")
    parser.add_argument(
        "--settings",
        nargs="+",
        default=["49:16"],
        help="WINDOW:OVERLAP[:HxW tile] per run; the first is the baseline of the ratios",
    )
    parser.add_argument("--json", type=Path, default=Path("bench/results/autoencode_memory.json"))
    parser.add_argument("--setting", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.setting:
        print(json.dumps(child(args)))
        return
    rows = []
    for setting in args.settings:
        cmd = [sys.executable, __file__, "--setting", setting] + [
            f"--{k}={getattr(args, k)}" for k in ("model", "frames", "height", "width", "device", "dtype")
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        rows.append(json.loads(out))
        print(rows[-1], flush=True)
    base = rows[0]
    print(f"\n{args.model} autoencode, {args.frames}x{args.height}x{args.width}, {args.dtype} on {args.device}")
    print(f"{'window:overlap[:tile]':<24} {'seconds':>8} {'peak RSS GiB':>13} {'vs first':>9}")
    for r in rows:
        ratio = r["peak_rss_gib"] / base["peak_rss_gib"]
        print(f"{r['setting']:<24} {r['seconds']:>8} {r['peak_rss_gib']:>13} {ratio:>8.2f}x")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"args": {k: v for k, v in vars(args).items() if k != "json"}, "rows": rows}, indent=2, default=str)
    )


if __name__ == "__main__":
    main()
