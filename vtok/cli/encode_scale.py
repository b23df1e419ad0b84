"""`vtok encode`'s dataset-scale flags: ranks (`--shard I/N` or torchrun), decode workers, batches, clips, shards."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import torch

from ..inference.clips import ClipSpec
from ..inference.sharding import Rank
from .arg_types import non_negative_int, positive_int

SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)
UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def byte_size(text: str) -> int:
    """'1GB', '500MB', '64k' or a number of bytes (binary units: 1GB is 2**30 bytes)."""
    match = SIZE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"must be a size such as 1GB, 500MB or 1048576, got {text!r}")
    return max(1, int(float(match.group(1)) * UNITS[match.group(2).upper()]))


def add_scale_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("dataset scale")
    group.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="encode only shard I of N (0-based), for schedulers without torchrun (e.g. SLURM arrays); under "
        "torchrun each rank takes its shard by itself",
    )
    group.add_argument(
        "--manifest",
        type=Path,
        default=None,
        help="`vtok index`'s manifest, for the frame counts that balance the shards (default: the "
        "vtok_manifest.json beside the videos when there is one, else the containers' headers)",
    )
    group.add_argument(
        "--num_workers",
        type=non_negative_int,
        default=0,
        help="processes that decode videos while the model runs (default 0: decode in this process, streaming "
        "frames; with workers each video is decoded whole into memory)",
    )
    group.add_argument("--prefetch", type=positive_int, default=2, help="files each worker decodes ahead (default 2)")
    group.add_argument(
        "--batch_size",
        type=positive_int,
        default=1,
        help="windows of equal shape encoded in one model call (clips, or videos of one size and length that fit "
        "one temporal window); the tokens are the same as one at a time",
    )
    group.add_argument("--compile", action="store_true", help="torch.compile the encoder (torch mode)")
    group.add_argument(
        "--clip_frames",
        type=positive_int,
        default=None,
        help="tokenize windows of this many frames, each on its own, instead of whole videos",
    )
    group.add_argument(
        "--clip_stride", type=positive_int, default=None, help="frames between window starts (default --clip_frames)"
    )
    group.add_argument(
        "--format",
        choices=("files", "shards"),
        default="files",
        help="files: one .safetensors per input (default); shards: WebDataset-style tar shards of samples",
    )
    group.add_argument(
        "--shard_size",
        type=byte_size,
        default=None,
        help="with --format shards: start a new shard after this many bytes (default 1GB)",
    )


def clip_spec(args: argparse.Namespace, images: bool) -> ClipSpec:
    """The windows the flags ask for; ValueError in one line for flags that do not go together."""
    if args.clip_frames is None:
        if args.clip_stride is not None:
            raise ValueError("--clip_stride needs --clip_frames")
        return ClipSpec()
    if images:
        raise ValueError("--clip_frames cuts videos into windows; images (--image_pattern) have one frame")
    return ClipSpec(args.clip_frames, args.clip_stride or args.clip_frames)


def check_scale_args(args: argparse.Namespace, rank: Rank) -> None:
    """Refuse, in one line, flag combinations that cannot work (before any model loads)."""
    if args.output_dir is None and (rank.count > 1 or args.format == "shards"):
        what = "--format shards" if args.format == "shards" else f"a sharded run ({rank.label})"
        raise ValueError(f"{what} needs --output_dir: the ranks' outputs and the merged manifest go there")
    if args.format == "shards" and args.overwrite:
        raise ValueError("--overwrite cannot replace samples inside finished shards; choose a new --output_dir")
    if args.shard_size is not None and args.format != "shards":
        raise ValueError("--shard_size sets the size of tar shards; add --format shards")
    if args.compile and args.mode != "torch":
        raise ValueError("--compile compiles vtok's network (--mode torch); a TorchScript graph is already compiled")


def rank_device(args: argparse.Namespace, rank: Rank) -> None:
    """One device per rank: under torchrun, `cuda` (or the default) means this rank's local GPU."""
    if rank.torchrun and args.device in (None, "auto", "cuda") and torch.cuda.is_available():
        args.device = f"cuda:{rank.local_index % torch.cuda.device_count()}"
