"""`vtok encode`: pre-tokenize videos or images to one `.safetensors` file each, resumable."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..inference.media import encode_image, encode_video
from ..inference.per_file import run_per_file
from ..io import IMAGE_SUFFIXES, VIDEO_SUFFIXES, expand_patterns, output_paths
from ..io.tokens import is_complete, save_tokens
from .inference_args import add_checkpoint_args, add_processing_args, engine_from_args, pipeline_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "encode",
        help="tokenize videos/images to .safetensors (latents or int32 indices)",
        description="Write, for every input, one .safetensors file with its continuous latent `latent` "
        "[C,t,h,w] or discrete token indices `indices` [t,h,w] (int32, in [0, 64000)), plus what `vtok decode` "
        "needs (model, fps, frame count, size, padding) as metadata. Files already written are skipped, so an "
        "interrupted run continues where it stopped; files are written atomically.",
        epilog="example: vtok encode --video_pattern 'datasets/hdvila/videos/*.mp4' "
        "--checkpoint_enc checkpoints/Cosmos-Tokenize1-DV8x16x16-720p/encoder.jit --output_dir tokens/",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--video_pattern", help="glob of input videos (quote it)")
    source.add_argument("--image_pattern", help="glob of input images")
    add_checkpoint_args(p, required_parts="encoder")
    add_processing_args(p)
    p.add_argument(
        "--output_dir",
        type=Path,
        default=None,
        help="where to write (default: a tokens/ folder beside each input); sub-folders mirror the inputs'",
    )
    p.add_argument("--overwrite", action="store_true", help="re-encode inputs whose token file already exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    images = args.image_pattern is not None
    files = expand_patterns(
        args.image_pattern if images else args.video_pattern, IMAGE_SUFFIXES if images else VIDEO_SUFFIXES
    )
    targets = output_paths(files, args.output_dir, ".safetensors", default_folder="tokens")
    engine = engine_from_args(args)
    pipeline = pipeline_from_args(args, engine)
    checkpoint = [str(p) for p in (args.checkpoint, args.checkpoint_enc) if p is not None]
    encode = encode_image if images else encode_video

    def job(source: Path) -> bool:
        target = targets[source]
        if not args.overwrite and is_complete(target):
            return False
        save_tokens(target, *encode(pipeline, source, checkpoint))
        return True

    print(f"{engine.name} ({engine.describe()}): {len(files)} file(s)")
    report = run_per_file(files, job, "encode")
    print(report.summary("encode"))
    return report.exit_code
