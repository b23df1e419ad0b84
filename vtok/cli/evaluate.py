"""`vtok evaluate`: PSNR / SSIM / LPIPS of a tokenizer's reconstructions, optionally against a baseline."""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

from ..devices import resolve_device
from ..evaluation import evaluate_videos, format_table
from ..evaluation.videos import evaluation_outputs
from ..io import VIDEO_SUFFIXES, expand_patterns
from ..metrics import LPIPS, find_lpips_weights
from .inference_args import add_checkpoint_args, add_processing_args, engine_from_args, pipeline_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score reconstructions (PSNR, SSIM, LPIPS), optionally against a baseline checkpoint",
        description="Autoencode every video with --checkpoint (model A) and, if given, --baseline (model B), and "
        "compare each reconstruction with its input. Writes metrics.csv, metrics.json (with per-frame "
        "PSNR) and psnr_per_frame.png to --output_dir. PSNR is reported two ways: `psnr` is the mean of "
        "per-frame PSNRs (NVIDIA's training validation); `psnr_pooled` is the PSNR of the MSE pooled over "
        "each video, meaned over videos (TokenBench). LPIPS is computed when its weights are available "
        "locally (--lpips_weights or $VTOK_LPIPS_WEIGHTS: a folder with vgg16.pth and lpips' vgg.pth).",
        epilog="example: vtok evaluate --video_pattern 'val/*.mp4' --checkpoint logs/run/checkpoints/iter_5000.pt "
        "--baseline checkpoints/Cosmos-Tokenize1-CV8x8x8-720p",
    )
    p.add_argument("--video_pattern", required=True, help="glob of input videos (quote it)")
    add_checkpoint_args(p)
    p.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="checkpoint to compare with (release folder, model.pt, iter_N.pt or a .jit; "
        "an encoder.jit finds its decoder.jit beside it)",
    )
    p.add_argument("--baseline_tokenizer_type", default=None, help="model name of the baseline if not inferable")
    add_processing_args(p)
    p.add_argument("--output_dir", type=Path, default=Path("evaluation"), help="where to write (default: evaluation/)")
    p.add_argument(
        "--save_videos",
        action="store_true",
        help="also write side-by-side mp4s (input | A | B) to <output_dir>/videos/",
    )
    p.add_argument("--lpips_weights", type=Path, default=None, help="folder with vgg16.pth and lpips' vgg.pth")
    p.set_defaults(func=run)


def _baseline_args(args: argparse.Namespace) -> argparse.Namespace:
    baseline = copy.copy(args)
    baseline.checkpoint, baseline.checkpoint_enc, baseline.checkpoint_dec = args.baseline, None, None
    baseline.tokenizer_type = args.baseline_tokenizer_type or args.tokenizer_type
    return baseline


def _describe(args: argparse.Namespace) -> str:
    return ", ".join(str(p) for p in (args.checkpoint, args.checkpoint_enc, args.checkpoint_dec) if p is not None)


def run(args: argparse.Namespace) -> int:
    files = expand_patterns(args.video_pattern, VIDEO_SUFFIXES)
    plan = evaluation_outputs(files, args.output_dir, args.save_videos)
    plan.check()  # before any model loads: the tables can be written, and replace no file vtok did not write
    resolve_device(args.device)
    weights = find_lpips_weights(args.lpips_weights)
    lpips = LPIPS.from_files(*weights) if weights else None
    runs = [("A", args)] + ([("B", _baseline_args(args))] if args.baseline else [])
    pipelines, checkpoints = {}, {}
    for label, run_args in runs:
        engine = engine_from_args(run_args)
        pipelines[label] = pipeline_from_args(run_args, engine)
        checkpoints[label] = _describe(run_args)
        print(f"{label}: {engine.name} from {checkpoints[label]} ({engine.describe()})")
    if lpips is None:
        print("LPIPS: not computed (no local weights; see --lpips_weights)")
    settings = {"video_pattern": args.video_pattern, "short_size": args.short_size, "tile": args.tile}
    plan.prepare()
    evaluation = evaluate_videos(
        files, pipelines, checkpoints, args.output_dir, lpips=lpips, save_videos=args.save_videos, settings=settings
    )
    print(format_table(evaluation.models))
    print(evaluation.report.summary("evaluate"))
    for path in evaluation.written:
        print(f"wrote {path}")
    return evaluation.report.exit_code
