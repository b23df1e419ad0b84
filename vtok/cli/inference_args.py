"""Flags shared by autoencode / encode / decode / evaluate, named as in NVIDIA's `video_cli`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..devices import resolve_device, resolve_dtype
from ..inference.engine import MODES, TokenizerEngine, load_engine
from ..inference.nvidia_windows import NVIDIA_TEMPORAL_WINDOW
from ..inference.pipeline import Pipeline
from ..inference.windows import DEFAULT_WINDOW
from ..networks.config import MODEL_NAMES
from .arg_types import attention_horizon, non_negative_int, positive_int
from .device_args import add_device_args


def add_checkpoint_args(parser: argparse.ArgumentParser, required_parts: str = "encoder and decoder") -> None:
    group = parser.add_argument_group("checkpoint")
    group.add_argument(
        "--checkpoint", type=Path, default=None, help="release folder, model.pt, iter_N.pt or autoencoder.jit"
    )
    group.add_argument("--checkpoint_enc", type=Path, default=None, help="encoder.jit (or vtok's iter_N_enc.jit)")
    group.add_argument("--checkpoint_dec", type=Path, default=None, help="decoder.jit (or vtok's iter_N_dec.jit)")
    group.add_argument(
        "--tokenizer_type",
        default=None,
        metavar="NAME",
        help=f"model name when it cannot be inferred: {', '.join(MODEL_NAMES)}",
    )
    group.add_argument(
        "--mode",
        default="torch",
        choices=MODES,
        help="torch: vtok's network with the checkpoint's weights (default; any checkpoint), videos stream "
        "exactly; jit: run the TorchScript graphs as they are (.jit files only), videos run in approximate "
        "overlapping windows",
    )
    group.add_argument("--ema", action="store_true", help="use the EMA weights of a training checkpoint")
    add_device_args(group, default_dtype="auto")
    parser.set_defaults(required_parts=required_parts)


def add_processing_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("processing")
    group.add_argument(
        "--short_size",
        type=positive_int,
        default=None,
        help="resize so the short side has this many pixels (as NVIDIA's resize_video)",
    )
    group.add_argument(
        "--temporal_window",
        type=positive_int,
        default=None,
        help=f"frames per model call, 1 + a multiple of the temporal compression (default {DEFAULT_WINDOW}); "
        "bounds memory. --mode torch streams exactly: the first chunk has this many frames, later ones one "
        "fewer, and the result does not depend on it. --mode jit: overlapping windows (approximate, the result "
        f"depends on the window). --nvidia_compat: NVIDIA's window (default {NVIDIA_TEMPORAL_WINDOW}, any length)",
    )
    group.add_argument(
        "--temporal_overlap",
        type=non_negative_int,
        default=None,
        help="--mode jit only: frames each approximate window re-reads from the previous one, a multiple of the "
        "temporal compression (default 2x it); 0 restarts the causal model at every window, which shows seams",
    )
    group.add_argument(
        "--attention_horizon",
        type=attention_horizon,
        default="auto",
        metavar="LATENT_FRAMES",
        help="exact streaming: latent frames the temporal attention keeps; 'auto' (default: as many as fit in "
        "4 GiB per stream, e.g. 145 latent frames = 1153 frames for CV8x8x8 at 720p in bf16), 'all' (no limit) "
        "or a number. Past it the attention slides and results are approximate (said once)",
    )
    group.add_argument(
        "--nvidia_compat",
        action="store_true",
        help="reproduce NVIDIA's video_cli: windows of --temporal_window (default 17) frames that restart the "
        "model, black padding to multiples of 16, first/last frames repeated in time (approximate; no tiles)",
    )
    group.add_argument(
        "--tile",
        type=positive_int,
        nargs="+",
        default=None,
        metavar="PIXELS",
        help="process frames in overlapping spatial tiles of H [W] pixels to bound memory",
    )
    group.add_argument(
        "--tile_overlap",
        type=non_negative_int,
        default=None,
        help="pixels shared by neighbouring tiles (default a quarter of the tile)",
    )


def engine_from_args(args: argparse.Namespace) -> TokenizerEngine:
    """Load the checkpoint the flags name and check it has the parts this command runs."""
    device = resolve_device(args.device)
    engine = load_engine(
        args.checkpoint,
        args.checkpoint_enc,
        args.checkpoint_dec,
        tokenizer_type=args.tokenizer_type,
        mode=args.mode,
        device=device,
        dtype=resolve_dtype(args.dtype, device),
        ema=args.ema,
    )
    needs = args.required_parts
    has = {
        "encoder": engine.can_encode,
        "decoder": engine.can_decode,
        "encoder and decoder": (engine.can_encode and engine.can_decode) or engine.autoencode_fn is not None,
    }
    if not has[needs]:
        raise ValueError(
            f"this command needs the {needs} of the model, and the checkpoint given lacks it "
            "(pass --checkpoint_enc / --checkpoint_dec or a full checkpoint)"
        )
    return engine


def pipeline_from_args(args: argparse.Namespace, engine: TokenizerEngine) -> Pipeline:
    tile = None
    if getattr(args, "tile", None):
        if len(args.tile) > 2:
            raise ValueError(f"--tile takes H or H W, got {args.tile}")
        tile = (args.tile[0], args.tile[-1])
    return Pipeline(
        engine,
        temporal_window=args.temporal_window,
        temporal_overlap=args.temporal_overlap,
        tile=tile,
        tile_overlap=args.tile_overlap,
        short_size=getattr(args, "short_size", None),
        processing="nvidia_compat" if args.nvidia_compat else None,
        attention_horizon=args.attention_horizon,
    )
