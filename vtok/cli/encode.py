"""`vtok encode`: pre-tokenize videos or images to one `.safetensors` file each, resumable."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..inference.media import encode_image, encode_video, encoding_settings
from ..inference.per_file import run_per_file
from ..io import IMAGE_SUFFIXES, VIDEO_SUFFIXES, OutputPlan, expand_patterns, output_path, output_root
from ..io.tokens import encoding_differences, is_complete, read_token_meta, save_tokens
from .inference_args import add_checkpoint_args, add_processing_args, engine_from_args, pipeline_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "encode",
        help="tokenize videos/images to .safetensors (latents or int32 indices)",
        description="Write, for every input, one .safetensors file with its continuous latent `latent` "
        "[C,t,h,w] or discrete token indices `indices` [t,h,w] (int32, in [0, 64000)), plus what `vtok decode` "
        "needs (model, fps, frame count, size, padding) as metadata. Files already written with the same model, "
        "checkpoint and settings are skipped, so an interrupted run continues where it stopped (files made "
        "otherwise are refused unless --overwrite); files are written atomically.",
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


def stale_tokens(targets: dict[Path, Path], settings: dict[str, Any]) -> str | None:
    """One line naming the existing token files that another model, checkpoint or setting made, or None."""
    stale = []
    for target in targets.values():
        if is_complete(target):
            differ = encoding_differences(read_token_meta(target), settings)
            if differ:
                stale.append((target, differ))
    if not stale:
        return None
    (first, differ), others = stale[0], len(stale) - 1
    more = f" (and {others} more file(s))" if others else ""
    return (
        f"{len(stale)} token file(s) already in the output were made with other settings, and skipping them would "
        f"keep stale tokens: {first} differs in {', '.join(differ)}{more}; pass --overwrite to re-encode them, or "
        "choose another --output_dir"
    )


def run(args: argparse.Namespace) -> int:
    images = args.image_pattern is not None
    files = expand_patterns(
        args.image_pattern if images else args.video_pattern, IMAGE_SUFFIXES if images else VIDEO_SUFFIXES
    )
    plan = OutputPlan("tokens", files, "encode", owned=is_complete)
    targets = {
        f: plan.add(
            output_path(f, files, args.output_dir, ".safetensors", default_folder="tokens"),
            str(f),
            output_root(f, args.output_dir, "tokens"),
        )
        for f in files
    }
    plan.check()
    engine = engine_from_args(args)
    pipeline = pipeline_from_args(args, engine)
    if not args.overwrite:  # a finished file is skipped only when this run would write the same tokens
        stale = stale_tokens(targets, encoding_settings(pipeline))
        if stale:
            raise ValueError(stale)
    plan.prepare()
    checkpoint = [str(p) for p in (args.checkpoint, args.checkpoint_enc) if p is not None]
    encode = encode_image if images else encode_video

    def job(source: Path) -> bool:
        target = targets[source]
        if not args.overwrite and is_complete(target):
            return False
        save_tokens(target, *encode(pipeline, source, checkpoint))
        return True

    print(f"{engine.name} ({engine.describe()}): {len(files)} file(s)")
    report = run_per_file(
        files, job, "encode", resume="rerun the same command to continue (finished files are skipped)"
    )
    print(report.summary("encode"))
    return report.exit_code
