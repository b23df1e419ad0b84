"""`vtok demo` (what `make demo` runs): the arguments of vtok.demo.run_demo, and its table at the end."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..demo import MODELS, DemoSettings, run_demo
from ..demo.run import __doc__ as DEMO_DOC
from ..demo.run import summary_table
from .arg_types import non_negative_int, positive_float, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = DemoSettings()
    p = subparsers.add_parser(
        "demo",
        help="post-train a small tokenizer on generated videos and compare before/after",
        description=DEMO_DOC,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--output_dir",
        type=Path,
        default=defaults.output_dir,
        help="where everything goes; a previous demo there is replaced, any other non-empty folder "
        f"refused (default: {defaults.output_dir})",
    )
    p.add_argument("--model", default=defaults.model, choices=MODELS, help=f"tokenizer (default: {defaults.model})")
    p.add_argument(
        "--channels",
        type=positive_int,
        default=defaults.channels,
        help="network width when starting from random weights (released models: 128)",
    )
    p.add_argument(
        "--num_res_blocks",
        type=positive_int,
        default=defaults.num_res_blocks,
        help="residual blocks per level (released models: 2)",
    )
    p.add_argument(
        "--checkpoints",
        type=Path,
        default=defaults.checkpoints,
        help="folder searched for NVIDIA's Cosmos-Tokenize1-<model> release (default: checkpoints)",
    )
    p.add_argument(
        "--iterations",
        type=positive_int,
        default=defaults.iterations,
        help=f"training iterations (default: {defaults.iterations})",
    )
    p.add_argument(
        "--batch_size",
        type=positive_int,
        default=defaults.batch_size,
        help=f"clips per iteration (default: {defaults.batch_size})",
    )
    p.add_argument(
        "--lr",
        type=positive_float,
        default=None,
        help="learning rate (default: 3e-4 from random weights, NVIDIA's 1e-4 from released ones)",
    )
    p.add_argument(
        "--frames",
        type=positive_int,
        default=defaults.frames,
        help="frames per training clip (1 + k * temporal compression)",
    )
    p.add_argument(
        "--size",
        type=positive_int,
        default=defaults.size,
        help="crop side in pixels (a multiple of the spatial compression)",
    )
    p.add_argument(
        "--train_videos",
        type=positive_int,
        default=defaults.train_videos,
        help=f"generated training videos (default: {defaults.train_videos})",
    )
    p.add_argument(
        "--val_videos",
        type=positive_int,
        default=defaults.val_videos,
        help=f"generated held-out videos (default: {defaults.val_videos})",
    )
    p.add_argument(
        "--video_frames",
        type=positive_int,
        default=defaults.video_frames,
        help=f"frames per generated video (default: {defaults.video_frames})",
    )
    p.add_argument(
        "--video_size",
        type=positive_int,
        nargs=2,
        default=defaults.video_size,
        metavar=("H", "W"),
        help="generated video size (default: {} {})".format(*defaults.video_size),
    )
    p.add_argument(
        "--seed", type=non_negative_int, default=defaults.seed, help="seed of the data and the initial weights"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = DemoSettings(**{k: getattr(args, k) for k in DemoSettings.__dataclass_fields__})
    settings.video_size = tuple(settings.video_size)
    result = run_demo(settings)
    print("\n" + summary_table(result, settings.iterations))
    print(f"time: {result.total_seconds / 60:.1f} min in all, {result.train_seconds / 60:.1f} min of training")
    print("made:")
    for label, path in result.made.items():
        print(f"  {label:<16} {path}")
    if not result.psnr_after > result.psnr_before:
        print(f"vtok demo: PSNR did not improve ({result.psnr_before:.2f} -> {result.psnr_after:.2f} dB)")
        return 1
    return 0
