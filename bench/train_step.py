"""Training step time and peak memory of the `mock_` experiments, with each memory knob on and off.

Each (experiment, setting) runs in its own process, so its peak RSS is its own; a setting is a list of
config overrides (activation checkpointing, bf16 autocast vs fp32, the perceptual loss and its
checkpointing, FSDP2 over 2 gloo processes with `--fsdp`). The clip is drawn once from the mock loader and
repeated, so data loading does not count. Full-size steps are very slow on a CPU (a CV4x8x8 step on
49x256x144 takes minutes and ~20 GB), so the default shrinks frames, size and channels; the table then also
projects each setting's peak to the experiment's full shape (activations scale with pixels x channels, the
fp32 weights, gradients, AdamW moments and EMA are counted exactly for the full model). That projection is
an estimate per process (rank), not a GPU measurement; from tiny clips it overshoots, since fixed overheads
scale with it. The perceptual loss uses random VGG16 weights in torchvision's format (written to a temporary
file), since the real ones cannot be downloaded here; speed and memory do not depend on their values.

    python bench/train_step.py                                  # reduced shapes, a few minutes
    python bench/train_step.py --experiments CV4x8x8-360p --frames 49 --height 256 --width 144 --channels 128
    python bench/train_step.py --fsdp                           # adds FSDP2 on 2 processes (torchrun)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import torch

SETTINGS = {  # name: overrides on top of fp32, no checkpointing, no perceptual loss
    "fp32": [],
    "bf16": ["trainer.precision=bf16_autocast"],
    "fp32+act_ckpt": ["trainer.activation_checkpointing=true"],
    "fp32+perceptual": ["loss.perceptual.enabled=true"],
    "fp32+perceptual+ckpt": ["loss.perceptual.enabled=true", "loss.perceptual.checkpoint_activations=true"],
    "bf16+all_knobs": [
        "trainer.precision=bf16_autocast",
        "trainer.activation_checkpointing=true",
        "loss.perceptual.enabled=true",
        "loss.perceptual.checkpoint_activations=true",
    ],
}
BASE = [
    "trainer.precision=fp32",
    "trainer.activation_checkpointing=false",
    "loss.perceptual.enabled=false",
    "trainer.validate_at_start=false",
    "trainer.run_validation=false",
    "checkpoint.jit.enabled=false",
    "trainer.logging_iter=1000",
    "checkpoint.save_iter=1000000",
]


def kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text())[1])


def random_vgg16(path: Path) -> None:
    """Random VGG16 weights saved with torchvision's `features.*` keys (what `load_vgg16_features` reads)."""
    from vtok.networks.vgg import VGG16Features

    torch.manual_seed(0)
    torch.save(VGG16Features().state_dict(), path)


def experiment(model: str) -> str:
    return f"mock_Cosmos_Tokenize1_{model.replace('-', '_')}_HDVILA"


def shape_overrides(args: argparse.Namespace) -> list[str]:
    out = [f"model.config.network.channels={args.channels}"] if args.channels else []
    for loader in ("dataloader_train", "dataloader_val"):
        out += [f"{loader}.num_workers=0"]
        out += [f"{loader}.dataset.num_video_frames={args.frames}"] if args.frames else []
        out += [f"{loader}.dataset.crop_height={args.height}"] if args.height else []
        out += [f"{loader}.dataset.crop_width={args.width}"] if args.width else []
    return out


def child(args: argparse.Namespace) -> dict:
    """One setting: build the trainer, run `--steps` steps after one warm-up step, report time and memory."""
    from vtok.config import parse_train_args, resolve_now
    from vtok.training.distributed import close_distributed, init_distributed
    from vtok.training.trainer import Trainer

    overrides = [
        f"experiment={experiment(args.model)}",
        *BASE,
        *shape_overrides(args),
        *SETTINGS[args.setting],
        f"job.output_root={args.output_root}",
        f"job.name={args.setting}",
    ]
    if args.parallelism == "fsdp":
        overrides.append("trainer.parallelism=fsdp")
    config, _ = parse_train_args(overrides)
    config = resolve_now(config, datetime(2026, 1, 1))
    info = init_distributed(config.trainer)
    trainer = Trainer(config, info)
    x = next(iter(trainer.train_loader))["video"]
    trainer.batches = itertools.repeat(x)
    params = sum(p.numel() for p in trainer.network.parameters())
    rss_init = kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    trainer.train_step()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        trainer.train_step()
        times.append(time.perf_counter() - start)
    close_distributed()
    return {
        "model": args.model,
        "setting": args.setting + ("+fsdp2x2" if args.parallelism == "fsdp" else ""),
        "clip": list(x.shape),
        "channels": config.model.config.network.channels,
        "params": params,
        "step_s": min(times),
        "rss_init_gib": rss_init / 2**20,
        "peak_rss_gib": kib("VmHWM") / 2**20,
        "peak_over_init_gib": (kib("VmHWM") - rss_init) / 2**20,
    }


def full_shape(model: str) -> tuple[int, int, int, int]:
    """(frames, height, width, channels) of the experiment's default clip (one drawn from its mock loader)."""
    from vtok.config import parse_train_args
    from vtok.data import build_dataloader

    config, _ = parse_train_args([f"experiment={experiment(model)}", "dataloader_train.num_workers=0"])
    _, _, t, h, w = next(iter(build_dataloader(config.dataloader_train, "train", 0, 1, 0)))["video"].shape
    return t, h, w, config.model.config.network.channels


def full_state_gib(model: str) -> float:
    """fp32 weights + gradients + AdamW moments + EMA of the full-size network: 5 x 4 bytes per parameter."""
    import vtok

    with torch.device("meta"):
        tok = vtok.build_tokenizer(model)
    return sum(p.numel() for p in tok.parameters()) * 20 / 2**30


def run_child(args: argparse.Namespace, model: str, setting: str, parallelism: str, root: Path) -> dict:
    flags = [
        f"--{k}={getattr(args, k)}"
        for k in ("frames", "height", "width", "channels", "steps")
        if getattr(args, k) is not None
    ]
    flags += [
        f"--model={model}",
        f"--setting={setting}",
        f"--parallelism={parallelism}",
        f"--output_root={root}",
        "--child",
    ]
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone"]
        if parallelism == "fsdp"
        else [sys.executable]
    )
    done = subprocess.run(launcher + [__file__, *flags], capture_output=True, text=True, env=os.environ.copy())
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode or not lines:
        return {"model": model, "setting": setting, "error": (done.stderr or done.stdout).strip()[-400:]}
    rows = [json.loads(ln) for ln in lines]
    row = rows[0]
    row["peak_rss_gib"] = sum(r["peak_rss_gib"] for r in rows)  # all ranks of this machine together
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--experiments", nargs="+", default=["CV8x8x8-720p", "DV8x16x16-720p", "CV4x8x8-360p", "DV4x8x8-360p"]
    )
    parser.add_argument(
        "--settings",
        nargs="+",
        default=list(SETTINGS),
        choices=list(SETTINGS),
        help="the first is the baseline of the ratios",
    )
    parser.add_argument("--frames", type=int, default=9, help="clip frames (0: the experiment's)")
    parser.add_argument("--height", type=int, default=64, help="crop height (0: the experiment's)")
    parser.add_argument("--width", type=int, default=64, help="crop width (0: the experiment's)")
    parser.add_argument("--channels", type=int, default=16, help="network width (0: the experiment's, 128)")
    parser.add_argument("--steps", type=int, default=1, help="timed steps after one warm-up step (best kept)")
    parser.add_argument("--fsdp", action="store_true", help="also run each setting with FSDP2 on 2 processes")
    parser.add_argument("--json", type=Path, default=Path("bench/results/train_step.json"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--setting", help=argparse.SUPPRESS)
    parser.add_argument("--parallelism", default="ddp", help=argparse.SUPPRESS)
    parser.add_argument("--output_root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for k in ("frames", "height", "width", "channels"):
        setattr(args, k, getattr(args, k) or None)
    if args.child:
        print(json.dumps(child(args)), flush=True)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        vgg = Path(tmp) / "vgg16-random.pth"
        random_vgg16(vgg)
        os.environ["VTOK_VGG16_WEIGHTS"] = str(vgg)
        for model in args.experiments:
            for setting in args.settings:
                for parallelism in ("ddp", "fsdp") if args.fsdp else ("ddp",):
                    rows.append(run_child(args, model, setting, parallelism, Path(tmp) / "jobs"))
                    print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in rows[-1].items()}, flush=True)
    print(
        f"\ntrain step, clip {args.frames or 'full'} frames x {args.height or 'full'} x {args.width or 'full'}, "
        f"channels {args.channels or 'full'}; best of {args.steps}; ratios vs the first setting"
    )
    print(
        f"{'model':<15} {'setting':<28} {'step s':>7} {'vs base':>8} {'peak GiB':>9} {'+GiB':>6} {'proj. full GiB':>14}"
    )
    for model in args.experiments:
        frames, height, width, channels = full_shape(model)
        mine = [r for r in rows if r["model"] == model]
        base = next((r for r in mine if "error" not in r), None)
        for r in mine:
            if "error" in r:
                print(f"{model:<15} {r['setting']:<28} failed: {r['error'].splitlines()[-1] if r['error'] else ''}")
                continue
            _, _, t, h, w = r["clip"]
            scale = (frames * height * width) / (t * h * w) * channels / r["channels"]
            shards = 2 if r["setting"].endswith("fsdp2x2") else 1  # FSDP2 shards the state over 2 ranks
            r["projected_full_gib"] = r["peak_over_init_gib"] * scale + full_state_gib(model) / shards
            print(
                f"{model:<15} {r['setting']:<28} {r['step_s']:>7.2f} {base['step_s'] / r['step_s']:>7.2f}x "
                f"{r['peak_rss_gib']:>9.2f} {r['peak_over_init_gib']:>6.2f} {r['projected_full_gib']:>14.1f}"
            )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"args": {k: v for k, v in vars(args).items() if k != "json"}, "rows": rows}, indent=2, default=str)
    )


if __name__ == "__main__":
    main()
