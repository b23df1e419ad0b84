"""`vtok download-checkpoints`: NVIDIA's released Cosmos-Tokenize1 files from the Hugging Face Hub, verified."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..networks.config import MODEL_NAMES


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "download-checkpoints",
        help="download the released Cosmos-Tokenize1 checkpoints from the Hugging Face Hub",
        description="Download nvidia/Cosmos-Tokenize1-<type> into <checkpoint_dir>/Cosmos-Tokenize1-<type>/ "
        "(config.json, encoder.jit, decoder.jit, autoencoder.jit, model.pt and, for CV8x8x8-720p, mean_std.pt). "
        "Every file is checked against the Hub's listing and NVIDIA's MD5s; complete models are skipped, so the "
        "command can simply be run again after an interruption. For a gated repo, accept its license on the model "
        "page, then log in (`hf auth login`) or set HF_TOKEN.",
    )
    p.add_argument(
        "--tokenizer_types",
        nargs="+",
        default=None,
        metavar="TYPE",
        help=f"models to fetch (default: all): {', '.join(MODEL_NAMES)}",
    )
    p.add_argument(
        "--checkpoint_dir",
        type=Path,
        default=Path("checkpoints"),
        help="where the Cosmos-Tokenize1-<type> folders go (default: checkpoints)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here so that the other commands do not pay for importing huggingface_hub.
    from ..download.checkpoints import download_checkpoints

    report = download_checkpoints(args.tokenizer_types, args.checkpoint_dir, log=lambda line: print(line, flush=True))
    print(report.summary())
    return report.exit_code
