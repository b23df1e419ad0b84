"""Encode / decode / autoencode throughput, peak memory, PSNR and achieved FLOP/s of each inference path.

Paths (one process, interleaved `--repeats` times, best time kept, so ratios hold on a noisy machine):
`fp32-plain` is vtok's plain path (fp32 weights in the contiguous layout) and the baseline of every ratio;
`fp32-cl` stores weights and activations channels_last_3d (what `vtok.load_tokenizer` gives video models by
default); `bf16` and `bf16-cl` run bf16 weights in each layout. Each path's reconstruction is compared with
fp32-plain's (PSNR, range [-1,1]); FLOPs are counted once on the meta device and divided by the time, next to
a measured machine peak (matmul and Conv3d, fp32/bf16).
Peak memory (+GiB) is the process's peak RSS during the path's run over its RSS before it (Linux clear_refs);
memory the allocator kept from earlier runs is reused and not counted, so it is a lower bound.
Weights are random (`vtok.build_tokenizer`); speed does not depend on their values. Also reports CPU seconds
(process time), which contention from other processes inflates less than wall time.

    python bench/inference_throughput.py                                  # 17x256x256, CPU-sized
    python bench/inference_throughput.py --models CV8x8x8-720p --paths fp32-plain fp32 bf16
    python bench/inference_throughput.py --gpu_size --device cuda         # 121x720x1280 via Pipeline
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

import vtok
from vtok.inference import Pipeline, TokenizerEngine
from vtok.networks.memory_format import set_memory_format
from vtok.networks.tokenizer import Tokenizer

sys.path.insert(0, str(Path(__file__).parent))
from flops import model_flops  # noqa: E402

PATHS = {  # name: (dtype, channels_last)
    "fp32-plain": (torch.float32, False),
    "fp32-cl": (torch.float32, True),
    "bf16": (torch.bfloat16, False),
    "bf16-cl": (torch.bfloat16, True),
}


def rss_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text())[1])


def reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def machine_peak(device: torch.device, dtype: torch.dtype) -> dict:
    """Best FLOP/s of a 2048^3 matmul and of a 512->512 (1,3,3) Conv3d on 1x512x5x64x64 (channels_last)."""

    def best(fn, flops: float) -> float:
        fn()
        times = []
        for _ in range(5):
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times.append(time.perf_counter() - start)
        return flops / min(times)

    a = torch.randn(2048, 2048, device=device, dtype=dtype)
    x = torch.randn(1, 512, 5, 64, 64, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last_3d)
    w = torch.randn(512, 512, 1, 3, 3, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last_3d)
    with torch.inference_mode():
        mm = best(lambda: a @ a, 2 * 2048**3)
        conv = best(lambda: torch.nn.functional.conv3d(x, w, padding=(0, 1, 1)), 2 * 512 * 512 * 9 * 5 * 64 * 64)
    return {"matmul": mm, "conv3d": conv, "peak": max(mm, conv)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def prepare(base: Tokenizer, path: str, device: torch.device) -> Tokenizer:
    dtype, channels_last = PATHS[path]
    tok = vtok.build_tokenizer(base.name).eval()
    tok.load_state_dict(base.state_dict())
    layout = torch.channels_last_3d if channels_last else torch.contiguous_format
    return set_memory_format(tok.to(device=device, dtype=dtype), layout)


def test_clip(frames: int, height: int, width: int) -> torch.Tensor:
    """A smooth moving pattern with some noise, in [-1, 1], `[1,3,T,H,W]`."""
    g = torch.Generator().manual_seed(0)
    t, y, x = torch.meshgrid(torch.arange(frames), torch.arange(height), torch.arange(width), indexing="ij")
    base = torch.stack([torch.sin(x / 23 + t / 4 + c) * torch.cos(y / 17 - c) for c in range(3)])
    return (0.8 * base + 0.1 * torch.randn(base.shape, generator=g)).clamp(-1, 1)[None]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.float().clamp(-1, 1) - b.float().clamp(-1, 1)) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(4 / mse)


def run_once(tok: Tokenizer, path: str, x: torch.Tensor, device: torch.device) -> dict:
    """Encode then decode once; seconds (wall and CPU) of each, peak extra RSS, the reconstruction."""
    inp = x.to(device)  # the tokenizer gives it its dtype and layout, as for users
    before = rss_kib("VmRSS")
    reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    out = {}
    with torch.inference_mode():
        sync(device)
        w0, c0 = time.perf_counter(), time.process_time()
        encoded = tok.encode(inp)
        latent = encoded[1] if tok.config.is_discrete else encoded
        sync(device)
        w1, c1 = time.perf_counter(), time.process_time()
        recon = tok.decode(latent)
        sync(device)
        w2, c2 = time.perf_counter(), time.process_time()
    out.update(
        encode_s=w1 - w0,
        decode_s=w2 - w1,
        encode_cpu_s=c1 - c0,
        decode_cpu_s=c2 - c1,
        peak_extra_gib=(rss_kib("VmHWM") - before) / 2**20,
        peak_rss_gib=rss_kib("VmHWM") / 2**20,
        recon=recon.float().cpu(),
    )
    if device.type == "cuda":
        out["peak_cuda_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def bench_model(name: str, args: argparse.Namespace, device: torch.device, peaks: dict) -> list[dict]:
    torch.manual_seed(0)
    base = vtok.build_tokenizer(name).eval()
    shape = (1, 3, args.frames, args.height, args.width)
    with torch.device("meta"):
        meta = vtok.build_tokenizer(name).eval()
    enc_flops, dec_flops = model_flops(meta, shape)
    x = test_clip(*shape[2:])
    toks = {p: prepare(base, p, device) for p in args.paths}
    for p in args.paths:  # warm-up: oneDNN primitive creation, allocator
        run_once(toks[p], p, x[:, :, : 1 + base.config.time_factor], device)
    runs: dict[str, list[dict]] = {p: [] for p in args.paths}
    for _ in range(args.repeats):
        for p in args.paths:
            runs[p].append(run_once(toks[p], p, x, device))
            print(
                f"  {name} {p}: encode {runs[p][-1]['encode_s']:.2f}s decode {runs[p][-1]['decode_s']:.2f}s", flush=True
            )
    reference = runs["fp32-plain"][0]["recon"] if "fp32-plain" in runs else None
    pixels = args.frames * args.height * args.width
    rows = []
    for p in args.paths:
        rs = runs[p]
        enc, dec = min(r["encode_s"] for r in rs), min(r["decode_s"] for r in rs)
        ae = min(r["encode_s"] + r["decode_s"] for r in rs)
        ae_cpu = min(r["encode_cpu_s"] + r["decode_cpu_s"] for r in rs)
        dtype = PATHS[p][0]
        rows.append(
            {
                "model": name,
                "path": p,
                "encode_s": enc,
                "decode_s": dec,
                "autoencode_s": ae,
                "autoencode_cpu_s": ae_cpu,
                "encode_fps": args.frames / enc,
                "decode_fps": args.frames / dec,
                "autoencode_fps": args.frames / ae,
                "autoencode_mpix_s": pixels / ae / 1e6,
                "peak_extra_gib": max(r["peak_extra_gib"] for r in rs),
                "peak_rss_gib": max(r["peak_rss_gib"] for r in rs),
                "tflops": (enc_flops + dec_flops) / ae / 1e12,
                "pct_of_peak": 100 * (enc_flops + dec_flops) / ae / peaks[str(dtype)]["peak"],
                "psnr_vs_fp32_plain_db": None if reference is None else psnr(rs[0]["recon"], reference),
                **({"peak_cuda_gib": max(r["peak_cuda_gib"] for r in rs)} if device.type == "cuda" else {}),
            }
        )
    base_ae = next((r["autoencode_s"] for r in rows if r["path"] == "fp32-plain"), rows[0]["autoencode_s"])
    for r in rows:
        r["speedup_vs_fp32_plain"] = base_ae / r["autoencode_s"]
    return rows


def bench_pipeline(name: str, args: argparse.Namespace, device: torch.device) -> list[dict]:
    """GPU-sized input through vtok.inference.Pipeline (windows and tiles): autoencode time per path."""
    torch.manual_seed(0)
    base = vtok.build_tokenizer(name).eval()
    clip = ((test_clip(args.frames, args.height, args.width)[0].permute(1, 2, 3, 0) + 1) * 127.5).round()
    frames = clip.to(torch.uint8).numpy()
    tile = tuple(int(v) for v in args.tile.split("x")) if args.tile else None
    outputs, rows = {}, []
    for p in args.paths:
        tok = prepare(base, p, device)
        dtype = PATHS[p][0]
        engine = TokenizerEngine(
            tok.name,
            tok.config,
            device,
            dtype,
            "torch",
            tok.encode if not tok.config.is_discrete else (lambda x, t=tok: t.encode(x)[0]),
            tok.decode if not tok.config.is_discrete else tok.decode_indices,
        )
        pipe = Pipeline(engine, temporal_window=args.window, temporal_overlap=args.overlap, tile=tile)
        reset_peak_rss()
        sync(device)
        start = time.perf_counter()
        outputs[p] = np.stack(list(pipe.autoencode(iter(frames))))
        sync(device)
        seconds = time.perf_counter() - start
        rows.append(
            {
                "model": name,
                "path": p,
                "autoencode_s": seconds,
                "autoencode_fps": args.frames / seconds,
                "peak_rss_gib": rss_kib("VmHWM") / 2**20,
            }
        )
    ref = outputs.get("fp32-plain")
    for r in rows:
        r["speedup_vs_fp32_plain"] = rows[0]["autoencode_s"] / r["autoencode_s"]
        if ref is not None:
            mse = float(((outputs[r["path"]].astype(np.float64) - ref) ** 2).mean())
            r["psnr_vs_fp32_plain_db"] = float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["CV8x8x8-720p", "DV8x16x16-720p"])
    parser.add_argument(
        "--paths",
        nargs="+",
        default=list(PATHS),
        choices=list(PATHS),
        help="fp32-plain first: it is the baseline of ratios and PSNR",
    )
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--gpu_size", action="store_true", help="121x720x1280 through Pipeline (windows/tiles)")
    parser.add_argument("--window", type=int, default=49)
    parser.add_argument("--overlap", type=int, default=16)
    parser.add_argument("--tile", default=None, help="HxW spatial tile for --gpu_size, e.g. 368x640")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, default=Path("bench/results/inference_throughput.json"))
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.gpu_size:
        args.frames, args.height, args.width = 121, 720, 1280
        rows = [r for m in args.models for r in bench_pipeline(m, args, device)]
        print(
            f"\nautoencode {args.frames}x{args.height}x{args.width} via Pipeline (window {args.window}, overlap "
            f"{args.overlap}, tile {args.tile}) on {device}"
        )
        print(f"{'model':<16} {'path':<11} {'seconds':>8} {'frames/s':>9} {'vs plain':>9} {'PSNR dB':>8}")
        for r in rows:
            print(
                f"{r['model']:<16} {r['path']:<11} {r['autoencode_s']:>8.1f} {r['autoencode_fps']:>9.2f} "
                f"{r['speedup_vs_fp32_plain']:>8.2f}x {r.get('psnr_vs_fp32_plain_db', float('nan')):>8.1f}"
            )
        peaks = {}
    else:
        peaks = {str(dt): machine_peak(device, dt) for dt in {PATHS[p][0] for p in args.paths}}
        rows = [r for m in args.models for r in bench_model(m, args, device, peaks)]
        for dt, before in list(peaks.items()):  # again at the end, the best kept: contention only lowers it
            after = machine_peak(device, getattr(torch, dt.removeprefix("torch.")))
            peaks[dt] = {k: max(before[k], after[k]) for k in before}
        for r in rows:
            r["pct_of_peak"] = 100 * r["tflops"] * 1e12 / peaks[str(PATHS[r["path"]][0])]["peak"]
        print(
            f"\nmachine peak on {device} ({torch.get_num_threads()} threads): "
            + ", ".join(
                f"{k.removeprefix('torch.')} matmul {v['matmul'] / 1e12:.3f} / conv3d {v['conv3d'] / 1e12:.3f} TFLOP/s"
                for k, v in peaks.items()
            )
        )
        print(f"{args.frames}x{args.height}x{args.width}, best of {args.repeats}; ratios vs fp32-plain autoencode")
        print(
            f"{'model':<15} {'path':<10} {'enc f/s':>8} {'dec f/s':>8} {'AE f/s':>7} {'AE Mpx/s':>8} "
            f"{'AE cpu s':>8} {'vs plain':>8} {'TFLOP/s':>8} {'% peak':>6} {'+GiB':>5} {'PSNR dB':>8}"
        )
        for r in rows:
            print(
                f"{r['model']:<15} {r['path']:<10} {r['encode_fps']:>8.2f} {r['decode_fps']:>8.2f} "
                f"{r['autoencode_fps']:>7.2f} {r['autoencode_mpix_s']:>8.3f} {r['autoencode_cpu_s']:>8.1f} "
                f"{r['speedup_vs_fp32_plain']:>7.2f}x {r['tflops']:>8.3f} {r['pct_of_peak']:>6.1f} "
                f"{r['peak_extra_gib']:>5.2f} {r['psnr_vs_fp32_plain_db']:>8.1f}"
            )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "args": {k: v for k, v in vars(args).items() if k != "json"},
                "threads": torch.get_num_threads(),
                "machine_peak_flops": peaks,
                "rows": rows,
            },
            indent=2,
            default=str,
        )
    )


if __name__ == "__main__":
    main()
