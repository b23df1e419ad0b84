"""`vtok train [--] [--dryrun] experiment=NAME key=value ...`: one training process (torchrun: `-m vtok.train`)."""

from __future__ import annotations

import argparse

from ..config.cli import usage


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="post-train a tokenizer (one process; use torchrun -m vtok.train for several)",
        description="Post-train a Cosmos-Tokenize1 video tokenizer from a named experiment and key=value "
        "overrides, as NVIDIA's training command does.\n\n" + usage(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dryrun", action="store_true", help="print the resolved config and exit")
    p.add_argument("overrides", nargs=argparse.REMAINDER, help="experiment=NAME and key=value overrides")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train import run as train

    return train((["--dryrun"] if args.dryrun else []) + list(args.overrides))
