"""The prepared GPU check: one command that measures what vtok needs to know on a GPU, in a few minutes.

Sections (each timed; once `--budget_s` is spent the rest are skipped, and say so):
1. parity: every video model at small width on the device vs the CPU, fp32 (latent, reconstruction, indices);
2. bf16: bf16 vs fp32 on the device for the four full-size models at 17x256x256 (PSNR of the reconstruction,
   latent error, index agreement); NVIDIA's released weights when `--checkpoints` holds them, else random ones;
3. throughput: autoencode frames/s and achieved TFLOP/s (FLOPs counted on the meta device) for CV8x8x8 and
   DV8x16x16 at 121x720x1280 and CV4x8x8 and DV4x8x8 at 49x360x640, eager and torch.compile;
4. train: one training step (time, peak memory) of each `Cosmos_Tokenize1_*` experiment at its default clip shape,
   bf16 autocast, with and without activation checkpointing (the perceptual term on random VGG16 weights);
5. ddp: a 1-process torchrun job (NCCL on CUDA, gloo on the CPU) for a few iterations with a save, then a resume.
It writes `<out>.json` and a markdown table `<out>.md`.

    python bench/gpu_check.py                      # on the GPU (about 6-8 minutes on one H100/H200-class GPU)
    python bench/gpu_check.py --smoke              # the same code on the CPU at tiny shapes (the test suite runs it)
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

import vtok
from vtok.metrics import to_uint8
from vtok.networks.memory_format import set_memory_format

VIDEO_MODELS = ("CV8x8x8-720p", "DV8x16x16-720p", "CV4x8x8-360p", "DV4x8x8-360p")
THROUGHPUT_SHAPES = {
    "CV8x8x8-720p": (121, 720, 1280),
    "DV8x16x16-720p": (121, 720, 1280),
    "CV4x8x8-360p": (49, 360, 640),
    "DV4x8x8-360p": (49, 360, 640),
}


@dataclass
class Sizes:
    """The shapes of a run: the real ones on a GPU, tiny ones with --smoke."""

    parity_channels: int = 16
    parity_shape: tuple[int, int, int] = (17, 64, 64)
    bf16_channels: int | None = None  # None: full width
    bf16_shape: tuple[int, int, int] = (17, 256, 256)
    throughput_channels: int | None = None
    throughput_shapes: dict[str, tuple[int, int, int]] = field(default_factory=lambda: dict(THROUGHPUT_SHAPES))
    train_overrides: list[str] = field(default_factory=list)
    ddp_overrides: list[str] = field(default_factory=lambda: ["model.config.network.channels=32"])
    repeats: int = 3

    @classmethod
    def smoke(cls) -> Sizes:
        """Tiny shapes for the CPU; the training steps skip the perceptual term (full-width VGG16 is slow there)."""
        tiny = {name: (9, 32, 32) for name in VIDEO_MODELS}
        loaders = [
            f"{loader}.dataset.{key}"
            for loader in ("dataloader_train", "dataloader_val")
            for key in ("num_video_frames=9", "crop_height=32", "crop_width=32")
        ]
        return cls(
            parity_shape=(9, 32, 32),
            bf16_channels=16,
            bf16_shape=(9, 32, 32),
            throughput_channels=16,
            throughput_shapes=tiny,
            train_overrides=["model.config.network.channels=16", "loss.perceptual.enabled=false", *loaders],
            ddp_overrides=["model.config.network.channels=16", *loaders],
            repeats=1,
        )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median seconds of `fn` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (to_uint8(a).double() - to_uint8(b).double()).square().mean().item()
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def clip(shape: tuple[int, int, int], seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, *shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def encode_decode(tok: vtok.Tokenizer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """(latent or codes, indices or None, reconstruction)."""
    with torch.inference_mode():
        if tok.config.is_discrete:
            indices, codes = tok.encode(x)
            return codes, indices, tok.decode(codes)
        latent = tok.encode(x)
        return latent, None, tok.decode(latent)


def load_model(name: str, checkpoints: Path | None, channels: int | None) -> tuple[vtok.Tokenizer, str]:
    release = checkpoints / f"Cosmos-Tokenize1-{name}" if checkpoints else None
    if release is not None and release.is_dir() and channels is None:
        return vtok.load_tokenizer(release), "released"
    torch.manual_seed(0)
    return vtok.build_tokenizer(name, **({"channels": channels} if channels else {})).eval(), "random"


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


# ------------------------------------------------------------------------------------------------ sections
def check_parity(device: torch.device, sizes: Sizes, args: argparse.Namespace) -> list[dict]:
    rows = []
    for name in VIDEO_MODELS:
        tok = load_model(name, None, sizes.parity_channels)[0]
        x = clip(sizes.parity_shape)
        ref = encode_decode(tok, x)
        got = encode_decode(tok.to(device), x.to(device))
        rows.append(
            {
                "model": name,
                "latent_max_abs": (got[0].float().cpu() - ref[0].float()).abs().max().item(),
                "reconstruction_max_abs": (got[2].float().cpu() - ref[2].float()).abs().max().item(),
                "index_mismatches": None if ref[1] is None else int((got[1].cpu() != ref[1]).sum()),
            }
        )
        free(device)
    return rows


def check_bf16(device: torch.device, sizes: Sizes, args: argparse.Namespace) -> list[dict]:
    rows = []
    for name in VIDEO_MODELS:
        tok, weights = load_model(name, args.checkpoints, sizes.bf16_channels)
        tok = set_memory_format(tok.to(device), torch.channels_last_3d)
        x = clip(sizes.bf16_shape).to(device)
        latent, indices, recon = encode_decode(tok, x)
        tok.to(torch.bfloat16)
        latent16, indices16, recon16 = encode_decode(tok, x)
        scale = latent.float().abs().max().item() or 1.0
        rows.append(
            {
                "model": name,
                "weights": weights,
                "psnr_bf16_vs_fp32_db": psnr(recon16, recon),
                "latent_max_abs_rel": (latent16.float() - latent.float()).abs().max().item() / scale,
                "index_agreement": None if indices is None else float((indices16 == indices).double().mean()),
            }
        )
        del tok
        free(device)
    return rows


def model_flops(tok: vtok.Tokenizer, shape: tuple[int, int, int]) -> int:
    """Encode + decode FLOPs of one clip of `shape`, counted on the meta device (shapes only)."""
    with torch.device("meta"):
        meta = vtok.tokenizer_from_config(tok.config, tok.name).eval()
    x = torch.zeros((1, 3, *shape), device="meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        encoded = meta.encode(x)
        meta.decode(encoded[1] if meta.config.is_discrete else encoded)
    return counter.get_total_flops()


def check_throughput(device: torch.device, sizes: Sizes, args: argparse.Namespace) -> list[dict]:
    rows = []
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    for name, shape in sizes.throughput_shapes.items():
        tok = load_model(name, None, sizes.throughput_channels)[0]
        flops = model_flops(tok, shape)
        tok = set_memory_format(tok.to(device=device, dtype=dtype), torch.channels_last_3d)
        x = clip(shape).to(device=device, dtype=dtype)
        for mode in ("eager", "compile") if args.compile else ("eager",):
            row = {"model": name, "clip": list(shape), "dtype": str(dtype).removeprefix("torch."), "mode": mode}
            try:
                started = time.perf_counter()
                if mode == "compile":
                    tok.encoder.compile()
                    tok.decoder.compile()
                seconds = timed(lambda tok=tok, x=x: encode_decode(tok, x), device, sizes.repeats)
                row.update(
                    first_call_s=round(time.perf_counter() - started - seconds * sizes.repeats, 2),
                    seconds=seconds,
                    frames_per_s=shape[0] / seconds,
                    tflops=flops / seconds / 1e12,
                )
                if device.type == "cuda":
                    row["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
            except Exception as err:  # a failed compile is a result to report, not the end of the check
                row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:300]
            rows.append(row)
        del tok, x
        torch._dynamo.reset()
        free(device)
    return rows


def random_vgg16(path: Path) -> None:
    from vtok.networks.vgg import VGG16Features

    torch.manual_seed(0)
    torch.save(VGG16Features().state_dict(), path)


def check_train(device: torch.device, sizes: Sizes, args: argparse.Namespace) -> list[dict]:
    from vtok.config import experiment_name, parse_train_args, resolve_now
    from vtok.training import Trainer
    from vtok.training.distributed import DistInfo

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        vgg = Path(tmp) / "vgg16.pth"
        random_vgg16(vgg)
        precision = "bf16_autocast" if device.type == "cuda" else "fp32"
        for name in VIDEO_MODELS:
            for recompute in (False, True):
                overrides = [
                    f"experiment=mock_{experiment_name(name)}",
                    f"trainer.precision={precision}",
                    f"trainer.activation_checkpointing={str(recompute).lower()}",
                    "trainer.validate_at_start=false",
                    "trainer.run_validation=false",
                    "checkpoint.jit.enabled=false",
                    "trainer.tensorboard=false",
                    f"job.output_root={tmp}",
                    f"job.name={name}_{recompute}",
                    f"loss.perceptual.vgg_weights={vgg}",
                    f"trainer.device={device.type}",
                    "dataloader_train.num_workers=0",
                    "dataloader_val.num_workers=0",
                    *sizes.train_overrides,
                ]
                row = {
                    "experiment": experiment_name(name),
                    "precision": precision,
                    "activation_checkpointing": recompute,
                }
                try:
                    config, _ = parse_train_args(overrides)
                    trainer = Trainer(resolve_now(config, datetime(2026, 1, 1)), DistInfo(device=device))
                    x = next(iter(trainer.train_loader))["video"]
                    trainer.batches = iter(lambda x=x: x, None)
                    free(device)
                    row["clip"] = list(x.shape)
                    row["step_s"] = timed(trainer.train_step, device, sizes.repeats)
                    if device.type == "cuda":
                        row["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
                    del trainer
                except Exception as err:  # out of memory, say: report it and go on
                    row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:300]
                rows.append(row)
                free(device)
    return rows


def check_ddp(device: torch.device, sizes: Sizes, args: argparse.Namespace) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = [
            "experiment=mock_Cosmos_Tokenize1_CV4x8x8_360p_HDVILA",
            f"job.output_root={tmp}",
            "job.name=ddp",
            "checkpoint.save_iter=2",
            "trainer.validate_at_start=false",
            "trainer.logging_iter=1",
            "checkpoint.jit.enabled=false",
            "dataloader_train.num_workers=0",
            "dataloader_val.num_workers=0",
            f"trainer.device={device.type}",
            *sizes.ddp_overrides,
        ]
        if device.type != "cuda":
            base.append("trainer.precision=fp32")
        for max_iter in (2, 4):
            port = 29600 + os.getpid() % 1000
            command = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nproc_per_node=1",
                f"--master_port={port}",
                "-m",
                "vtok.train",
                "--",
                *base,
                f"trainer.max_iter={max_iter}",
            ]
            started = time.perf_counter()
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"}
            )
            log = result.stdout + result.stderr
            backend = "nccl" if device.type == "cuda" else "gloo"
            rows.append(
                {
                    "run": f"to iteration {max_iter}",
                    "exit_code": result.returncode,
                    "backend": backend,
                    "seconds": round(time.perf_counter() - started, 1),
                    "resumed": "optimizer state, schedule and iteration: from" in log and max_iter == 4,
                    "saved": sorted(p.name for p in Path(tmp).rglob("iter_*.pt")),
                    "last_line": (log.strip().splitlines() or [""])[-1][-200:],
                }
            )
    return rows


SECTIONS = {
    "parity": check_parity,
    "bf16": check_bf16,
    "throughput": check_throughput,
    "train": check_train,
    "ddp": check_ddp,
}


# ------------------------------------------------------------------------------------------------ report
def markdown(results: dict) -> str:
    lines = [
        f"# GPU check: {results['device_name']}",
        "",
        f"{results['date']}, torch {results['torch']}, "
        f"vtok {results['vtok']}, {'smoke run (CPU, tiny shapes)' if results['smoke'] else 'full run'}",
        "",
    ]
    for section, body in results["sections"].items():
        lines += [f"## {section} ({body['seconds']:.0f} s)", ""]
        rows = body.get("rows") or []
        if body.get("skipped") or body.get("error"):
            lines += [f"{body.get('skipped') or body.get('error')}", ""]
        if not rows:
            continue
        keys = list(dict.fromkeys(k for row in rows for k in row))
        lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        for row in rows:
            cells = [
                f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v).replace("|", "/"))
                for v in (row.get(k) for k in keys)
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="run every section on the CPU at tiny shapes")
    parser.add_argument("--device", default=None, help="default: cuda (cpu with --smoke)")
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also time torch.compile'd networks (default: on, off with --smoke: compiling for the CPU takes minutes)",
    )
    parser.add_argument("--budget_s", type=float, default=480, help="start no section after this many seconds")
    parser.add_argument(
        "--checkpoints",
        type=Path,
        default=Path("checkpoints"),
        help="folder of NVIDIA's Cosmos-Tokenize1-* releases, for the bf16 section (optional)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/gpu_check"), help="writes OUT.json and OUT.md")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cpu" if args.smoke else "cuda"))
    args.compile = not args.smoke if args.compile is None else args.compile
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run it on a GPU machine, or with --smoke on the CPU", file=sys.stderr)
        return 1
    sizes = Sizes.smoke() if args.smoke else Sizes()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # fp32 parity means fp32
    results = {
        "date": datetime.now().strftime("%Y-%m-%d %H:%M"),
        "torch": torch.__version__,
        "vtok": vtok.__version__,
        "smoke": args.smoke,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
        "sections": {},
    }
    started = time.perf_counter()
    for section in args.sections:
        body: dict = {"seconds": 0.0}
        if time.perf_counter() - started > args.budget_s:
            body["skipped"] = f"skipped: the budget of {args.budget_s:.0f} s was spent"
        else:
            begin = time.perf_counter()
            print(f"gpu_check: {section} ...", flush=True)
            try:
                body["rows"] = SECTIONS[section](device, sizes, args)
            except Exception as err:
                body["error"] = f"{type(err).__name__}: {err}"
                traceback.print_exc()
            body["seconds"] = time.perf_counter() - begin
        results["sections"][section] = body
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=2, default=str))  # kept if a later one dies
    report = markdown(results)
    args.out.with_suffix(".md").write_text(report + "\n")
    print(report)
    failed = [s for s, b in results["sections"].items() if b.get("error")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
