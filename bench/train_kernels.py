"""Training step (forward, L1, backward) with the layouts and conv kernels the trainer can choose, against vtok's
plain fp32 contiguous Conv3d step measured in the same run.

Each variant is one setting of the two measured choices: layout (contiguous or channels_last_3d) and conv kernels
(Conv3d everywhere, or the per-shape table `trainer.conv_kernels=auto` builds, tuned here from an empty cache so
its one-time cost is reported too; applied without the trainer's whole-step check, which would drop a table
that is not faster). Steps of all variants are interleaved round by round, so drift in the
machine's speed hits them alike; the median per variant is reported, with its ratio to the plain step.
`--compile` adds torch.compile of the plain step (its compile time is reported, then its steps).

    python bench/train_kernels.py                                       # full-size CV8x8x8 at 9x128x128
    python bench/train_kernels.py --models CV8x8x8-720p DV8x16x16-720p --rounds 5
    python bench/train_kernels.py --channels 32 --frames 9 --size 64 64   # quick
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import vtok
from vtok.networks.conv_kernels import set_kernel_table
from vtok.networks.memory_format import set_memory_format
from vtok.training.conv_tuning import tune_kernels

LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last_3d": torch.channels_last_3d}


def step_fn(network: torch.nn.Module, x: torch.Tensor):
    def step() -> None:
        (network(x).reconstructions - x).abs().mean().backward()
        for p in network.parameters():
            p.grad = None

    return step


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process: what the step cost when other tenants steal time)."""
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu


def bench_model(name: str, args: argparse.Namespace) -> list[dict]:
    torch.manual_seed(0)
    overrides = {"channels": args.channels} if args.channels else {}
    base = vtok.build_tokenizer(name, **overrides).train()
    shape = (1, 3, args.frames, *args.size)
    clip = torch.rand(shape) * 2 - 1
    variants, rows = {}, {}
    cache = Path(tempfile.mkdtemp()) / "conv_kernels.json"
    for layout_name, layout in LAYOUTS.items():
        x = clip.contiguous(memory_format=layout)
        for kernels in ("conv3d", "auto"):
            network = set_memory_format(vtok.build_tokenizer(name, **overrides).train(), layout)
            network.load_state_dict(base.state_dict())
            label = f"{layout_name} + {kernels}"
            rows[label] = {"model": name, "variant": label, "tuning_s": 0.0, "swapped": 0}
            if kernels == "auto":
                start = time.perf_counter()
                table, measured, _ = tune_kernels(network, shape, False, cache)
                rows[label] |= {"tuning_s": time.perf_counter() - start, "swapped": len(table), "shapes": measured}
                set_kernel_table(network, table)
            variants[label] = step_fn(network, x)
    if args.compile:
        network = vtok.build_tokenizer(name, **overrides).train()
        network.load_state_dict(base.state_dict())
        compiled = torch.compile(network)
        rows["contiguous + compile"] = {"model": name, "variant": "contiguous + compile", "swapped": 0}
        rows["contiguous + compile"]["tuning_s"] = timed(step_fn(compiled, clip))[0]
        variants["contiguous + compile"] = step_fn(compiled, clip)
    times: dict[str, list[tuple[float, float]]] = {label: [] for label in variants}
    for fn in variants.values():
        fn()  # warm-up
    for _ in range(args.rounds):
        for label, fn in variants.items():
            times[label].append(timed(fn))
    for label, row in rows.items():
        wall, cpu = zip(*times[label], strict=True)
        row |= {"step_s": statistics.median(wall), "spread_s": [min(wall), max(wall)], "cpu_s": statistics.median(cpu)}
    plain = rows["contiguous + conv3d"]
    for row in rows.values():
        row["x_plain"], row["x_plain_cpu"] = plain["step_s"] / row["step_s"], plain["cpu_s"] / row["cpu_s"]
    return list(rows.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["CV8x8x8-720p"])
    parser.add_argument("--channels", type=int, default=0, help="network width (0: the model's full width)")
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--size", type=int, nargs=2, default=[128, 128], metavar=("H", "W"))
    parser.add_argument("--rounds", type=int, default=3, help="timed steps per variant, interleaved")
    parser.add_argument("--compile", action="store_true", help="also torch.compile the plain step")
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, clip 1x3x{args.frames}x{args.size[0]}x"
        f"{args.size[1]}, fp32, median of {args.rounds} interleaved steps after a warm-up"
    )
    print(
        f"{'model':16} {'variant':28} {'step s':>7} {'min-max':>11} {'x plain':>7} {'cpu s':>6} {'x plain':>7} "
        f"{'tuning s':>8} {'swapped':>7}"
    )
    for name in args.models:
        for row in bench_model(name, args):
            lo, hi = row["spread_s"]
            print(
                f"{row['model']:16} {row['variant']:28} {row['step_s']:7.3f} {lo:5.2f}-{hi:<5.2f} "
                f"{row['x_plain']:7.2f} {row['cpu_s']:6.2f} {row['x_plain_cpu']:7.2f} {row['tuning_s']:8.1f} "
                f"{row['swapped']:7d}",
                flush=True,
            )


if __name__ == "__main__":
    main()
