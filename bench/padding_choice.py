"""Which spatial padding reconstructs the real pixels best: NVIDIA's black, or zero (mid-grey), replicate, reflect.

A frame whose size is not a multiple of the model's spatial compression is padded before encoding and cropped
after decoding. On a trained checkpoint and real clips, cropped to sizes that need padding, this measures the
PSNR of the real pixels (after cropping back) for each fill, all else equal (one exact pass over the clip,
padded to the model's compression), plus NVIDIA's whole `video_cli` behaviour (black to multiples of 16,
17-frame windows that restart the model, edge frames in time) as `nvidia_compat`. `border` is the PSNR of
the 8-pixel band along the frame's edge, where the fill is felt most.

    python bench/padding_choice.py --checkpoint runs/x/checkpoints/iter_000001500.pt --videos 'val/*.mp4'
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import vtok
from vtok.inference.nvidia_windows import nvidia_autoencode
from vtok.inference.pipeline import FrameLayout, to_frames, to_model_input
from vtok.io import read_video

FILLS = ("zero", "black", "replicate", "reflect")
BORDER = 8


def padded(x: torch.Tensor, layout: FrameLayout, fill: str) -> torch.Tensor:
    top, bottom, left, right = layout.padding
    pads = (left, right, top, bottom)
    if fill in ("zero", "black"):
        return F.pad(x, pads, value=0.0 if fill == "zero" else -1.0)
    return F.pad(x, (*pads, 0, 0), mode=fill)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / max(mse, 1e-10)))


def border_band(frames: np.ndarray) -> np.ndarray:
    mask = np.zeros(frames.shape[1:3], dtype=bool)
    mask[:BORDER], mask[-BORDER:], mask[:, :BORDER], mask[:, -BORDER:] = True, True, True, True
    return frames[:, mask]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--videos", required=True, help="glob of real clips (each at least --frames long)")
    parser.add_argument("--frames", type=int, default=33)
    parser.add_argument("--sizes", default="124x116,100x90,130x146", help="crop sizes HxW that need padding")
    parser.add_argument("--output", type=Path, default=Path("bench/results/padding_choice.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    tok = vtok.load_tokenizer(args.checkpoint, device="cpu", dtype=torch.float32)
    tc, sc = tok.compression
    files = sorted(glob.glob(args.videos))
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    rows: dict[str, dict[str, list[float]]] = {}
    with torch.inference_mode():
        for path in files:
            video = read_video(path)[0][: args.frames]
            frames = 1 + (len(video) - 1) // tc * tc
            video = video[:frames]
            for height, width in sizes:
                top, left = (video.shape[1] - height) // 2, (video.shape[2] - width) // 2
                crop = np.ascontiguousarray(video[:, top : top + height, left : left + width])
                x = to_model_input(crop)
                layout = FrameLayout.fit(height, width, sc)
                outputs = {fill: layout.crop(tok(padded(x, layout, fill)).reconstructions) for fill in FILLS}
                outputs["nvidia_compat"] = nvidia_autoencode(x, lambda v: tok(v).reconstructions)
                for name, y in outputs.items():
                    out = to_frames(y)
                    row = rows.setdefault(f"{height}x{width}", {}).setdefault(name, [])
                    row.append((psnr(out, crop), psnr(border_band(out), border_band(crop))))
            print(f"{path}: done", flush=True)
    summary = {
        size: {
            name: {"psnr": float(np.mean([v[0] for v in vals])), "border": float(np.mean([v[1] for v in vals]))}
            for name, vals in by_fill.items()
        }
        for size, by_fill in rows.items()
    }
    print(f"{tok.name}, {args.checkpoint}, {len(files)} clips x {frames} frames; PSNR dB (border {BORDER} px)")
    print("| size | " + " | ".join(FILLS + ("nvidia_compat",)) + " |")
    print("|---" * (len(FILLS) + 2) + "|")
    for size, by_fill in summary.items():
        cells = [f"{by_fill[n]['psnr']:.2f} ({by_fill[n]['border']:.2f})" for n in FILLS + ("nvidia_compat",)]
        print(f"| {size} | " + " | ".join(cells) + " |")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"checkpoint": args.checkpoint, "videos": files, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
