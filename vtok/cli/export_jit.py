"""`vtok export-jit`: checkpoint in, NVIDIA-compatible encoder.jit / decoder.jit / autoencoder.jit out."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..checkpoint import load_tokenizer
from ..checkpoint.export import RELEASE_NAMES, export_jit, is_vtok_export
from ..checkpoint.load import checkpoint_files
from ..devices import DTYPES, resolve_device
from ..io import OutputPlan
from .arg_types import positive_int
from .device_args import add_device_args


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export-jit",
        help="export a checkpoint to TorchScript files that replace NVIDIA's released ones",
        description="Trace a checkpoint (iter_N.pt, model.pt, a release folder or .jit files) into encoder.jit, "
        "decoder.jit and autoencoder.jit with NVIDIA's input/output contract. Uses the EMA weights of a "
        "training checkpoint unless --reg is given.",
    )
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint file or release folder")
    p.add_argument("--tokenizer_type", default=None, help="model name, e.g. CV8x8x8-720p (inferred if omitted)")
    p.add_argument(
        "--output_dir", type=Path, default=None, help="where to write (default: next to the checkpoint, in <stem>_jit/)"
    )
    p.add_argument("--reg", action="store_true", help="export the regular weights instead of the EMA ones")
    p.add_argument(
        "--input_shape",
        type=positive_int,
        nargs="+",
        default=None,
        metavar="N",
        help="example input for tracing, e.g. 1 3 17 512 512 (needs T >= 1 + temporal compression; "
        "the traced files work at any size)",
    )
    add_device_args(p, default_dtype="bfloat16")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ckpt = args.checkpoint
    device = resolve_device(args.device)
    out_dir = args.output_dir or ckpt.with_name(f"{ckpt.name if ckpt.is_dir() else ckpt.stem}_jit")
    inputs = [p.resolve() for p in checkpoint_files(ckpt)] if ckpt.exists() else []
    plan = OutputPlan("models", inputs, "export-jit", owned=is_vtok_export)
    for part, filename in RELEASE_NAMES.items():
        plan.add(out_dir / filename, f"the exported {part}", out_dir)
    plan.check()  # before loading: never over the checkpoint read, NVIDIA's release files or a user's file
    tok = load_tokenizer(ckpt, args.tokenizer_type, ema=False if args.reg else None)
    use_ema = tok.load_info["ema"]
    plan.prepare()
    written = export_jit(tok, out_dir, example_shape=args.input_shape, dtype=DTYPES[args.dtype], device=device)
    print(f"{tok.name} ({'EMA' if use_ema else 'checkpoint'} weights, {args.dtype}):")
    for part, path in written.items():
        print(f"  {part:<12} {path}")
    return 0
