"""Work per pixel of each full-size model: encode and decode FLOPs per input pixel, counted once.

FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode` on the meta device (shapes only, no
arithmetic, so every model takes seconds); one multiply-add is 2 FLOPs. Video models count T x H x W input
pixels, image models H x W. Prints a table (kFLOP per pixel, and TFLOP per clip) and writes JSON.

    python bench/flops.py                      # all models, 17x256x256 clips (256x256 images)
    python bench/flops.py --frames 121 --height 720 --width 1280 --models CV8x8x8-720p
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

import vtok
from vtok.networks.tokenizer import Tokenizer


def count(fn, *args) -> int:
    """FLOPs of `fn(*args)`."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn(*args)
    return counter.get_total_flops()


def model_flops(tok: Tokenizer, shape: tuple[int, ...]) -> tuple[int, int]:
    """(encode, decode) FLOPs of one input of `shape`; `tok` and the input may live on the meta device."""
    x = torch.zeros(shape, device=tok.device)
    with torch.inference_mode():
        encoded = tok.encode(x)
        latent = encoded[1] if tok.config.is_discrete else encoded
        return count(tok.encode, x), count(tok.decode, latent)


def input_shape(tok: Tokenizer, frames: int, height: int, width: int) -> tuple[int, ...]:
    return (1, 3, frames, height, width) if tok.config.is_video else (1, 3, height, width)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(vtok.MODEL_NAMES))
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--json", type=Path, default=Path("bench/results/flops.json"))
    args = parser.parse_args()
    rows = []
    for name in args.models:
        with torch.device("meta"):
            tok = vtok.build_tokenizer(name).eval()
        shape = input_shape(tok, args.frames, args.height, args.width)
        pixels = shape[-1] * shape[-2] * (shape[2] if tok.config.is_video else 1)
        enc, dec = model_flops(tok, shape)
        rows.append(
            {
                "model": name,
                "input": list(shape),
                "encode_flops": enc,
                "decode_flops": dec,
                "encode_kflop_per_px": round(enc / pixels / 1e3, 1),
                "decode_kflop_per_px": round(dec / pixels / 1e3, 1),
            }
        )
    print(
        f"\nFLOPs per input pixel ({args.frames}x{args.height}x{args.width} clips; images {args.height}x{args.width})"
    )
    print(f"{'model':<16} {'encode kFLOP/px':>16} {'decode kFLOP/px':>16} {'autoencode TFLOP':>17}")
    for r in rows:
        total = (r["encode_flops"] + r["decode_flops"]) / 1e12
        print(f"{r['model']:<16} {r['encode_kflop_per_px']:>16} {r['decode_kflop_per_px']:>16} {total:>17.3f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"args": {k: v for k, v in vars(args).items() if k != "json"}, "rows": rows}, indent=2, default=str)
    )


if __name__ == "__main__":
    main()
