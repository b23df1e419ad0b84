"""Clips per second of `vtok encode`'s dataset path on this machine: 0 vs 2 decode workers, batches, 1 vs 2 ranks.

A tiny random-weight DV4x8x8 model (so decoding matters) tokenizes fixed-length clips of generated mp4s, through the
same loop `vtok encode` runs (decode loader, batched encode, shard sink), timed from the first item to the last
write (process start-up and model loading excluded). Ratios are against the 0-worker, 1-rank run of the same
invocation; `waits` is the share of the loop spent waiting for decoded data. Two ranks are two processes, each on
its half (split by frames, as `--shard I/N`), started together.

    python bench/encode_scale.py --videos 16 --frames 41 --size 128
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from conftest import small_tokenizer, synthetic_frames  # noqa: E402

from vtok.inference import Pipeline, TokenizerEngine  # noqa: E402
from vtok.inference.batch_encode import EncodeJob, ShardSink, run_encode  # noqa: E402
from vtok.inference.clips import ClipSpec, DecodeDataset, decode_loader  # noqa: E402
from vtok.inference.per_file import FileReport  # noqa: E402
from vtok.inference.sharding import frame_counts, split_by_frames  # noqa: E402
from vtok.io import write_video  # noqa: E402
from vtok.io.token_shards import ShardWriter  # noqa: E402


def tiny_pipeline() -> Pipeline:
    torch.manual_seed(0)
    tok = small_tokenizer("DV4x8x8-360p")
    engine = TokenizerEngine(tok.name, tok.config, torch.device("cpu"), torch.float32, "torch")
    engine.encode_fn = lambda x: tok.encode(x)[0]
    return Pipeline(engine, temporal_window=17)


class Timed:
    """An iterable that adds the time spent waiting for each item to `waited`."""

    def __init__(self, items) -> None:
        self.items, self.waited = items, 0.0

    def __iter__(self):
        source = iter(self.items)
        while True:
            start = time.perf_counter()
            item = next(source, None)
            self.waited += time.perf_counter() - start
            if item is None:
                return
            yield item


def encode_loop(files: list[Path], out: Path, rank: int, workers: int, batch: int, clips: ClipSpec) -> tuple:
    """(clips encoded, seconds, seconds waiting for data) of one rank's loop."""
    torch.set_num_threads(1)
    job = EncodeJob(tiny_pipeline(), [], clips, batch)
    sink = ShardSink(ShardWriter(out, rank, 1 << 30), "bench")
    items = Timed(decode_loader(DecodeDataset(files, "video", None, clips, False), workers, 2))
    start = time.perf_counter()
    report = run_encode(job, items, len(files), sink, FileReport(), f"rank {rank}", rank)
    seconds = time.perf_counter() - start
    assert not report.failed, report.failed
    return len(job.records), seconds, items.waited


def _rank_main(args: tuple, queue: multiprocessing.Queue, start: multiprocessing.Event) -> None:
    start.wait()
    queue.put(encode_loop(*args))


def two_ranks(files: list[Path], out: Path, workers: int, batch: int, clips: ClipSpec) -> tuple:
    shares = split_by_frames(files, frame_counts(files), 2)
    context = multiprocessing.get_context("spawn")
    queue, start = context.Queue(), context.Event()
    procs = [
        context.Process(target=_rank_main, args=((share, out, rank, workers, batch, clips), queue, start))
        for rank, share in enumerate(shares)
    ]
    for proc in procs:
        proc.start()
    time.sleep(8)  # both imported torch and built the model before the clock starts
    began = time.perf_counter()
    start.set()
    results = [queue.get() for _ in procs]
    seconds = time.perf_counter() - began
    for proc in procs:
        proc.join()
    return sum(r[0] for r in results), seconds, sum(r[2] for r in results) / len(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--frames", type=int, default=41)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--clip_frames", type=int, default=9)
    args = parser.parse_args()
    clips = ClipSpec(args.clip_frames, args.clip_frames)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = []
        for k in range(args.videos):
            path = root / "clips" / f"v{k:03d}.mp4"
            write_video(path, synthetic_frames(args.frames, args.size, args.size, seed=k), Fraction(24))
            files.append(path)
        runs = {
            "1 rank, 0 workers, batch 1": lambda out: encode_loop(files, out, 0, 0, 1, clips),
            "1 rank, 2 workers, batch 1": lambda out: encode_loop(files, out, 0, 2, 1, clips),
            "1 rank, 2 workers, batch 4": lambda out: encode_loop(files, out, 0, 2, 4, clips),
            "2 ranks, 0 workers, batch 1": lambda out: two_ranks(files, out, 0, 1, clips),
        }
        print(
            f"{args.videos} videos of {args.frames} frames {args.size}x{args.size}, {args.clip_frames}-frame clips, "
            f"DV4x8x8 at 16 channels, {os.cpu_count()} CPUs"
        )
        base = None
        for name, run in runs.items():
            count, seconds, waited = run(root / name.replace(" ", "_").replace(",", ""))
            rate = count / seconds
            base = base or rate
            print(
                f"{name:30s} {count} clips in {seconds:6.2f} s: {rate:6.2f} clips/s  x{rate / base:.2f}  "
                f"waits {waited / seconds:.0%}"
            )


if __name__ == "__main__":
    main()
