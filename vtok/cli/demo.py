"""`vtok demo`: a small end-to-end run on an embedded default, with no download and no GPU.

It builds a reduced-width CV8x8x8 tokenizer, tokenizes a synthetic moving clip, exports NVIDIA-format
TorchScript files, reads them back with `load_tokenizer` and checks that the exported files reproduce
the eager model at a size they were not traced with.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from .. import build_tokenizer, export_jit, load_tokenizer
from ..checkpoint.export import default_example_shape


def synthetic_clip(frames: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A [1,3,T,H,W] clip in [-1,1]: drifting sinusoidal texture plus a moving bright disc."""
    g = torch.Generator().manual_seed(seed)
    phase = torch.rand(3, generator=g) * 2 * math.pi
    t = torch.arange(frames).view(-1, 1, 1).float()
    y = torch.linspace(0, 1, height).view(1, -1, 1)
    x = torch.linspace(0, 1, width).view(1, 1, -1)
    channels = [torch.sin(2 * math.pi * (3 * x + 2 * y + 0.05 * t * (c + 1)) + phase[c]) for c in range(3)]
    clip = torch.stack(channels) * 0.5
    cy, cx = 0.5 + 0.3 * torch.sin(0.3 * t), 0.5 + 0.3 * torch.cos(0.3 * t)
    disc = (((y - cy) ** 2 + (x - cx) ** 2) < 0.02).float()
    return (clip + disc).clamp(-1, 1).unsqueeze(0)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="run a small end-to-end example on the CPU in seconds",
                              description=__doc__)
    p.add_argument("--output_dir", type=Path, default=Path("outputs/demo"), help="(default: outputs/demo)")
    p.add_argument("--channels", type=int, default=32, help="network width (released models: 128)")
    p.set_defaults(func=run)


@torch.no_grad()
def run(args: argparse.Namespace) -> int:
    torch.manual_seed(0)
    name = "CV8x8x8-720p"
    tok = build_tokenizer(name, channels=args.channels).eval()
    params = sum(p.numel() for p in tok.parameters())
    print(f"built {name} at channels={args.channels}: {params:,} parameters (random init)")

    clip = synthetic_clip(17, 128, 128)
    start = time.perf_counter()
    latent = tok.encode(clip)
    recon = tok.decode(latent)
    print(f"encode+decode {list(clip.shape)} -> latent {list(latent.shape)} -> {list(recon.shape)} "
          f"in {time.perf_counter() - start:.2f} s")

    files = export_jit(tok, args.output_dir, dtype=torch.float32)
    reloaded = load_tokenizer(args.output_dir)
    other = synthetic_clip(25, 64, 96, seed=1)
    encoder = torch.jit.load(str(files["encoder"]))
    decoder = torch.jit.load(str(files["decoder"]))
    jit_recon = decoder(encoder(other)[0])
    eager_recon = reloaded.decode(reloaded.encode(other))
    gap = (jit_recon - eager_recon).abs().max().item()
    print(f"exported {', '.join(str(p) for p in files.values())}")
    traced = "x".join(map(str, default_example_shape(tok)[2:]))
    print(f"traced at {traced}, run at {'x'.join(map(str, other.shape[2:]))}: max |jit - eager| = {gap:.2e}")
    return 0 if gap < 1e-4 else 1
