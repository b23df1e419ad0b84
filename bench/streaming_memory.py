"""Memory of exact streaming against video length: conv state, attention cache and peak, per model and part.

"Peak" is the most bytes of tensors alive at once while a video streams through the encoder or decoder
(weights and the input chunk excluded), counted after every ATen op by a dispatch mode. That is
deterministic, and on the meta device it needs no arithmetic, so the default run counts the real shapes of
the full-width models at 720p in seconds. On meta, attention is run as the fused kernel CPU and CUDA use
(no score matrix is stored). The one-pass peak of the same video is shown for comparison. Conv state and
attention cache are what the stream holds after its last chunk (`stream.memory()`).

`--device cpu` runs the real computation (at a size this machine can run: reduced width and frame size),
each setting in its own process, and adds that process's peak RSS growth over the loaded model (which
also holds allocator caches, kernel workspaces and the library's own ~100 MiB, so at small sizes it says
little). At 16 channels and 64x96 the counted conv state, cache and peaks on cpu equal those on meta byte
for byte, which is what makes the meta count a measurement rather than an extrapolation.

    python bench/streaming_memory.py                          # full width, 720x1280, 121/241/481 frames, meta
    python bench/streaming_memory.py --device cpu --channels 32 --height 96 --width 160 --chunk_latents 1
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import vtok
from vtok.networks.memory_format import set_memory_format
from vtok.networks.tokenizer import Tokenizer
from vtok.networks.video_streams import (
    DEFAULT_ATTENTION_BUDGET,
    attention_cache_bytes_per_latent_frame,
    horizon_for_budget,
)

MIB = 2**20


class LiveBytes(TorchDispatchMode):
    """Peak bytes of the storages that ops created and that are still alive, checked after every op.

    Storages are told apart by address while alive (weak references say when one is freed: its address may
    then be reused).
    """

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.ignored: dict[int, StorageWeakRef] = {}
        self.peak = 0

    def ignore(self, *tensors: torch.Tensor) -> None:
        """Storages not to count (weights, inputs made outside the measurement)."""
        for t in tensors:
            storage = t.untyped_storage()
            self.ignored[storage._cdata] = StorageWeakRef(storage)

    def _ignored(self, key: int) -> bool:
        ref = self.ignored.get(key)
        return ref is not None and not ref.expired()

    def live_bytes(self) -> int:
        self.live = {key: entry for key, entry in self.live.items() if not entry[0].expired()}
        return sum(n for _, n in self.live.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        current = self.live_bytes()
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                key = storage._cdata
                if key not in self.live and not self._ignored(key):
                    self.live[key] = (StorageWeakRef(storage), storage.nbytes())
                    current += storage.nbytes()
        self.peak = max(self.peak, current)
        return out


@contextmanager
def fused_attention_on_meta() -> Iterator[None]:
    """On meta tensors, run SDPA as the fused CPU kernel (its meta version) instead of the math fallback."""
    plain = F.scaled_dot_product_attention

    def fused(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, **kwargs):
        if q.device.type != "meta":
            return plain(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, **kwargs)
        if attn_mask is not None and attn_mask.dtype == torch.bool:
            attn_mask = torch.zeros(attn_mask.shape, dtype=q.dtype, device=q.device)
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q, k, v, dropout_p, is_causal, attn_mask=attn_mask
        )[0]

    F.scaled_dot_product_attention = fused
    try:
        yield
    finally:
        F.scaled_dot_product_attention = plain


def frame_chunks(frames: int, tc: int, chunk_latents: int) -> list[int]:
    """1 + k*tc frames, then k*tc frames, the last chunk what is left."""
    sizes, left = [1 + chunk_latents * tc], frames - 1 - chunk_latents * tc
    while left > 0:
        sizes.append(min(left, chunk_latents * tc))
        left -= sizes[-1]
    return sizes


def random_video(tok: Tokenizer, frames: int, height: int, width: int) -> torch.Tensor:
    shape = (1, 3, frames, height, width)
    return torch.empty(shape, device=tok.device) if tok.device.type == "meta" else torch.rand(shape) * 2 - 1


def random_latent(tok: Tokenizer, latents: int, height: int, width: int) -> torch.Tensor:
    sc = tok.compression[1]
    shape = (1, tok.config.latent_dim, latents, height // sc, width // sc)
    if tok.device.type == "meta":
        return torch.empty(shape, device="meta")
    if tok.config.is_discrete:
        return tok.indices_to_codes(torch.randint(0, tok.codebook_size, (1, latents, height // sc, width // sc)))
    return torch.randn(shape)


def measure_stream(tok: Tokenizer, part: str, frames: int, height: int, width: int, chunk_latents: int) -> dict:
    """Stream one video through the encoder or decoder; what it holds at the end, and the peak on the way."""
    tc = tok.compression[0]
    counter = LiveBytes()
    counter.ignore(*tok.parameters(), *tok.buffers())
    sizes = frame_chunks(frames, tc, chunk_latents)
    if part == "decoder":
        latents = 1 + (frames - 1) // tc
        sizes = [chunk_latents] * (latents // chunk_latents) + (
            [latents % chunk_latents] if latents % chunk_latents else []
        )
    stream = (
        tok.stream_encoder(attention_horizon=None) if part == "encoder" else tok.stream_decoder(attention_horizon=None)
    )
    with torch.no_grad(), stream:
        for size in sizes:
            chunk = (
                random_video(tok, size, height, width) if part == "encoder" else random_latent(tok, size, height, width)
            )
            counter.ignore(chunk)
            with counter:
                stream(chunk)
            del chunk
        memory = stream.memory()
        held = counter.live_bytes()
    # What the stream holds was made by the tracked ops: a count below it would be a counting error.
    assert held >= memory.total, (held, memory)
    return {
        "conv_state_bytes": memory.conv,
        "attention_bytes": memory.attention,
        "stream_peak_bytes": counter.peak,
        "chunks": len(sizes),
    }


def measure_one_pass(tok: Tokenizer, part: str, frames: int, height: int, width: int) -> int:
    counter = LiveBytes()
    counter.ignore(*tok.parameters(), *tok.buffers())
    tc = tok.compression[0]
    x = (
        random_video(tok, frames, height, width)
        if part == "encoder"
        else random_latent(tok, 1 + (frames - 1) // tc, height, width)
    )
    counter.ignore(x)
    with torch.no_grad(), counter:
        tok.encode(x) if part == "encoder" else tok.decode(x)
    return counter.peak


def build(args: argparse.Namespace, name: str) -> Tokenizer:
    overrides = {"channels": args.channels} if args.channels else {}
    torch.manual_seed(0)
    with torch.device(args.device):
        tok = vtok.build_tokenizer(name, **overrides).eval()
    # channels_last_3d: vtok's layout on CPU and CUDA (on meta it only changes which copies happen)
    return set_memory_format(tok.to(getattr(torch, args.dtype)), torch.channels_last_3d)


def run_setting(args: argparse.Namespace, name: str, frames: int, chunk_latents: int) -> list[dict]:
    tok = build(args, name)
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    rows = []
    with fused_attention_on_meta():
        for part in ("encoder", "decoder"):
            row = {
                "model": name,
                "part": part,
                "frames": frames,
                "chunk_latents": chunk_latents,
                **measure_stream(tok, part, frames, height=args.height, width=args.width, chunk_latents=chunk_latents),
            }
            if args.one_pass:
                row["one_pass_peak_bytes"] = measure_one_pass(tok, part, frames, args.height, args.width)
            rows.append(row)
    if args.device == "cpu":  # RSS is one number for the process: both parts together
        growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_loaded
        for row in rows:
            row["process_peak_rss_growth_bytes"] = growth
    return rows


def horizons(args: argparse.Namespace) -> list[dict]:
    """Default horizon (latent frames and video frames) of each model at this size, per dtype."""
    out = []
    for name in args.models:
        with torch.device("meta"):
            tok = vtok.build_tokenizer(name, **({"channels": args.channels} if args.channels else {}))
        for dtype in (torch.float32, torch.bfloat16):
            per_frame = attention_cache_bytes_per_latent_frame(tok, args.height, args.width, dtype=dtype)
            latents = horizon_for_budget(per_frame["encoder"], DEFAULT_ATTENTION_BUDGET)
            out.append(
                {
                    "model": name,
                    "dtype": str(dtype).removeprefix("torch."),
                    "bytes_per_latent_frame": per_frame,
                    "default_horizon_latents": latents,
                    "default_horizon_frames": 1 + (latents - 1) * tok.compression[0],
                }
            )
    return out


def mib(n: int | None) -> str:
    return "-" if n is None else f"{n / MIB:,.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=[n for n in vtok.MODEL_NAMES if n[1] == "V"])
    parser.add_argument("--frames", type=int, nargs="+", default=[121, 241, 481])
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--channels", type=int, default=0, help="network width; 0: the released 128")
    parser.add_argument(
        "--chunk_latents",
        type=int,
        nargs="+",
        default=[1, 6],
        help="latent frames per chunk (k: chunks of 1 + k*tc, then k*tc frames)",
    )
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--device", default="meta", choices=["meta", "cpu"])
    parser.add_argument(
        "--no_one_pass",
        dest="one_pass",
        action="store_false",
        help="skip the one-pass peak (slow on cpu for long videos)",
    )
    parser.add_argument("--json", type=Path, default=Path("bench/results/streaming_memory.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, frames, chunk = json.loads(args.child)
        print(json.dumps(run_setting(args, name, frames, chunk)))
        return
    rows = []
    for name in args.models:
        for chunk in args.chunk_latents:
            for frames in args.frames:
                if args.device == "meta":
                    rows += run_setting(args, name, frames, chunk)
                    continue
                child = [sys.executable, __file__, *sys.argv[1:], "--child", json.dumps([name, frames, chunk])]
                done = subprocess.run(child, check=True, capture_output=True, text=True)
                rows += json.loads(done.stdout.strip().splitlines()[-1])
    width = args.channels or 128
    print(
        f"\nStreaming memory, MiB ({args.device}, {args.dtype}, {args.height}x{args.width}, channels={width}; "
        "unlimited horizon)"
    )
    header = (
        f"{'model':<15} {'part':<8} {'chunk':>5} {'frames':>6} {'conv state':>11} {'attn cache':>11} "
        f"{'stream peak':>12} {'one-pass peak':>14}"
    )
    if args.device == "cpu":
        header += f" {'RSS growth':>11}"
    print(header)
    for r in rows:
        line = (
            f"{r['model']:<15} {r['part']:<8} {r['chunk_latents']:>5} {r['frames']:>6} "
            f"{mib(r['conv_state_bytes']):>11} {mib(r['attention_bytes']):>11} {mib(r['stream_peak_bytes']):>12} "
            f"{mib(r.get('one_pass_peak_bytes')):>14}"
        )
        if args.device == "cpu":
            line += f" {mib(r['process_peak_rss_growth_bytes']):>11}"
        print(line)
    horizon_rows = horizons(args)
    print(
        f"\nDefault attention horizon ({DEFAULT_ATTENTION_BUDGET / 2**30:g} GiB of keys/values per stream) at "
        f"{args.height}x{args.width}"
    )
    print(f"{'model':<15} {'dtype':<9} {'MiB per latent frame':>21} {'latent frames':>14} {'video frames':>13}")
    for h in horizon_rows:
        print(
            f"{h['model']:<15} {h['dtype']:<9} {mib(h['bytes_per_latent_frame']['encoder']):>21} "
            f"{h['default_horizon_latents']:>14} {h['default_horizon_frames']:>13}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "args": {k: v for k, v in vars(args).items() if k not in ("json", "child")},
                "rows": rows,
                "horizons": horizon_rows,
            },
            indent=2,
            default=str,
        )
    )


if __name__ == "__main__":
    main()
