"""`vtok autoencode`: reconstruct videos (or images) through a tokenizer, as NVIDIA's video_cli/image_cli."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..inference.media import autoencode_image, autoencode_video
from ..inference.per_file import run_per_file
from ..io import IMAGE_SUFFIXES, VIDEO_SUFFIXES, OutputPlan, expand_patterns, output_path, output_root
from ..io.video import is_vtok_video
from .arg_types import crf_value, positive_float
from .inference_args import add_checkpoint_args, add_processing_args, engine_from_args, pipeline_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "autoencode",
        help="reconstruct videos or images through a tokenizer (encode then decode)",
        description="Encode and decode every video matched by --video_pattern (or image by --image_pattern) and "
        "write the reconstructions as H.264 mp4 at the input's fps (images keep their format). Works at any "
        "length and size: frames are padded to the model's multiples and cropped back, long videos run in "
        "overlapping temporal windows, large frames optionally in spatial tiles. Files are processed in "
        "sorted order; an unreadable one is reported and skipped, and the exit code is 1 if any failed.",
        epilog="example: vtok autoencode --video_pattern 'clips/*.mp4' "
        "--checkpoint_enc checkpoints/Cosmos-Tokenize1-CV8x8x8-720p/encoder.jit "
        "--checkpoint_dec checkpoints/Cosmos-Tokenize1-CV8x8x8-720p/decoder.jit",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--video_pattern", help="glob of input videos, e.g. 'clips/*.mp4' (quote it)")
    source.add_argument("--image_pattern", help="glob of input images, e.g. 'images/*.png'")
    add_checkpoint_args(p)
    add_processing_args(p)
    out = p.add_argument_group("output")
    out.add_argument(
        "--output_dir",
        type=Path,
        default=None,
        help="where to write (default: a reconstructions/ folder beside each input)",
    )
    out.add_argument(
        "--output_fps", type=positive_float, default=None, help="fps of written videos (default: the input's)"
    )
    out.add_argument(
        "--save_input",
        action="store_true",
        help="also write the (resized) input as <name>_input.<ext>, for side-by-side viewing",
    )
    out.add_argument("--skip_existing", action="store_true", help="skip inputs whose output file exists")
    out.add_argument("--crf", type=crf_value, default=18, help="H.264 quality of written videos (lower is better)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    images = args.image_pattern is not None
    files = expand_patterns(
        args.image_pattern if images else args.video_pattern, IMAGE_SUFFIXES if images else VIDEO_SUFFIXES
    )
    plan = OutputPlan("media", files, "autoencode", owned=None if images else is_vtok_video)
    targets: dict[Path, Path] = {}
    copies: dict[Path, Path] = {}
    for source in files:
        suffix = source.suffix if images else ".mp4"  # images keep their format
        target = output_path(source, files, args.output_dir, suffix)
        if args.skip_existing and target.exists():
            continue  # skipped below: nothing of it is written
        root = output_root(source, args.output_dir)
        targets[source] = plan.add(target, f"the reconstruction of {source}", root)
        if args.save_input:
            copy = output_path(source, files, args.output_dir, suffix, "_input")
            copies[source] = plan.add(copy, f"the saved input of {source}", root)
    plan.check()  # before the model loads: no output is an input, or another output, or a file vtok did not write
    engine = engine_from_args(args)
    pipeline = pipeline_from_args(args, engine)
    plan.prepare()

    def job(source: Path) -> bool:
        if source not in targets:
            return False
        target, input_target = targets[source], copies.get(source)
        if images:
            autoencode_image(pipeline, source, target, input_target)
        else:
            autoencode_video(pipeline, source, target, fps=args.output_fps, input_target=input_target, crf=args.crf)
        return True

    print(f"{engine.name} ({engine.describe()}): {len(files)} file(s)")
    report = run_per_file(files, job, "autoencode", resume="add --skip_existing to continue where it stopped")
    print(report.summary("autoencode"))
    return report.exit_code
