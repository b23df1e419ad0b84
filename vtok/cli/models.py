"""`vtok models`: the named tokenizers with their compression, latent and size."""

from __future__ import annotations

import argparse

import torch

from ..networks import MODEL_NAMES, get_config, tokenizer_from_config


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "models",
        help="list the Cosmos-Tokenize1 models vtok builds",
        description="List the named models with compression, latent and parameter count.",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(f"{'model':<16} {'kind':<25} {'compression':<13} {'latent for 17x512x512':<24} {'parameters':>12}")
    for name in MODEL_NAMES:
        with torch.device("meta"):
            tok = tokenizer_from_config(get_config(name), name)
        cfg = tok.config
        shape = (1, 3, 17, 512, 512) if cfg.is_video else (1, 3, 512, 512)
        latent = list(tok.latent_shape(shape))[1:]
        kind = ("discrete" if cfg.is_discrete else "continuous") + (" video" if cfg.is_video else " image")
        kind += f" ({'FSQ 64K' if cfg.is_discrete else cfg.formulation})"
        tc, sc = tok.compression
        comp = f"{tc}x{sc}x{sc}" if cfg.is_video else f"{sc}x{sc}"
        params = sum(p.numel() for p in tok.parameters())
        print(f"{name:<16} {kind:<25} {comp:<13} {str(latent):<24} {params:>12,}")
    return 0
