"""`vtok decode`: token files written by `vtok encode` back to mp4 (or images)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..inference.media import RECORDED, write_decoded
from ..inference.per_file import run_per_file
from ..io import TOKEN_SUFFIXES, OutputPlan, expand_patterns, output_path, output_root
from ..io.tokens import load_tokens, read_token_meta
from ..io.video import is_vtok_video
from .arg_types import attention_horizon, crf_value, non_negative_int, positive_int
from .inference_args import add_checkpoint_args, engine_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "decode",
        help="decode .safetensors token files back to mp4/png",
        description="Decode files written by `vtok encode` to H.264 mp4 at the original fps and frame count "
        "(images to PNG). The processing recorded at encoding is used again (exact streams in the same chunks "
        "with --mode torch, the same approximate windows, or NVIDIA's windows), so encode + decode gives exactly "
        "what `vtok autoencode` gives with the same flags.",
        epilog="example: vtok decode --token_pattern 'tokens/*.safetensors' "
        "--checkpoint_dec checkpoints/Cosmos-Tokenize1-DV8x16x16-720p/decoder.jit --output_dir decoded/",
    )
    p.add_argument("--token_pattern", required=True, help="glob of token files (quote it)")
    add_checkpoint_args(p, required_parts="decoder")
    p.add_argument(
        "--tile",
        type=positive_int,
        nargs="+",
        default=None,
        metavar="PIXELS",
        help="decode in overlapping spatial tiles of H [W] output pixels to bound memory",
    )
    p.add_argument(
        "--attention_horizon",
        type=attention_horizon,
        default=argparse.SUPPRESS,
        metavar="LATENT_FRAMES",
        help="streamed tokens: latent frames the decoder's temporal attention keeps ('auto', 'all' or a number; "
        "default: the setting the tokens were encoded with, so decode equals autoencode)",
    )
    p.add_argument("--tile_overlap", type=non_negative_int, default=None, help="pixels shared by neighbouring tiles")
    p.add_argument(
        "--output_dir",
        type=Path,
        default=None,
        help="where to write (default: a decoded/ folder beside each token file)",
    )
    p.add_argument("--crf", type=crf_value, default=18, help="H.264 quality (lower is better)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    files = expand_patterns(args.token_pattern, TOKEN_SUFFIXES)
    metas = {}
    for path in files:
        try:
            metas[path] = read_token_meta(path)
        except ValueError:
            pass  # reported as failed by the batch below
    plan = OutputPlan("media", files, "decode", owned=is_vtok_video)
    targets = {
        path: plan.add(
            output_path(
                path, files, args.output_dir, ".png" if meta.media == "image" else ".mp4", default_folder="decoded"
            ),
            str(path),
            output_root(path, args.output_dir, "decoded"),
        )
        for path, meta in metas.items()
    }
    plan.check()
    clipped = [path for path, meta in metas.items() if meta.clip_frames]
    if clipped:
        raise ValueError(
            f"{clipped[0]} holds {metas[clipped[0]].clip_frames}-frame clips (vtok encode --clip_frames), and vtok "
            "decode decodes whole videos: read the clips with vtok.data.TokenDataset and decode each one with "
            "vtok.load_tokenizer"
        )
    engine = engine_from_args(args)
    foreign = sorted({m.model for m in metas.values() if m.model != engine.name})
    if foreign:
        raise ValueError(f"the token files were made by {', '.join(foreign)}, but the checkpoint is {engine.name}")
    tile = (args.tile[0], args.tile[-1]) if args.tile else None
    horizon = getattr(args, "attention_horizon", RECORDED)
    if engine.tokenizer is None and any(m.processing == "stream" for m in metas.values()):
        print(
            "vtok: note: the tokens were streamed exactly, and a TorchScript decoder cannot stream: they are decoded "
            "in approximate overlapping windows (--mode torch decodes them exactly)",
            file=sys.stderr,
        )
    plan.prepare()

    def job(path: Path) -> bool:
        tokens, meta = load_tokens(path)
        write_decoded(engine, tokens, meta, targets[path], tile, args.tile_overlap, args.crf, horizon)
        return True

    print(f"{engine.name} ({engine.describe()}): {len(files)} file(s)")
    report = run_per_file(files, job, "decode")
    print(report.summary("decode"))
    return report.exit_code
