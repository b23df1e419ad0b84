"""`vtok demo`: the whole post-training loop on this machine in minutes, with no GPU, account or download.

It generates textured, moving videos (a training and a held-out set), starts from a small tokenizer (random
weights at reduced width, exported like NVIDIA's release folder; or NVIDIA's released weights when
`checkpoints/Cosmos-Tokenize1-<model>` exists), post-trains it with the real trainer (the
`Cosmos_Tokenize1_*` experiment, overridden to small sizes), which writes checkpoints and TorchScript files,
then autoencodes the held-out videos before and after with `vtok autoencode` and compares them with
`vtok evaluate`. It ends with a table and the paths of what it made, including a loss-curve PNG and a PNG
grid of input / before / after frames.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from .. import build_tokenizer, export_jit
from ..config import parse_train_args
from ..data.synthetic import write_textured_videos
from ..evaluation.figures import frame_grid, plot_loss_curve, read_scalars
from ..io.video import read_video
from ..networks.config import canonical_name
from ..train import run as train_run
from ..training.perceptual import find_vgg16_weights

MODELS = ("CV4x8x8-360p", "DV4x8x8-360p", "CV8x8x8-720p", "DV8x16x16-720p")
JOB = ("demo", "vtok")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="post-train a small tokenizer on generated videos and compare before/after",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--output_dir",
        type=Path,
        default=Path("outputs/demo"),
        help="where everything goes; a previous demo there is replaced (default: outputs/demo)",
    )
    p.add_argument("--model", default="CV4x8x8-360p", choices=MODELS, help="which tokenizer (default: CV4x8x8-360p)")
    p.add_argument(
        "--channels",
        type=int,
        default=24,
        help="network width when starting from random weights (released models: 128)",
    )
    p.add_argument("--num_res_blocks", type=int, default=1, help="residual blocks per level (released models: 2)")
    p.add_argument(
        "--checkpoints",
        type=Path,
        default=Path("checkpoints"),
        help="folder searched for NVIDIA's Cosmos-Tokenize1-<model> release (default: checkpoints)",
    )
    p.add_argument("--iterations", type=int, default=300, help="training iterations (default: 300)")
    p.add_argument("--batch_size", type=int, default=2, help="clips per iteration (default: 2)")
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help="learning rate (default: 3e-4 from random weights, NVIDIA's 1e-4 from released ones)",
    )
    p.add_argument("--frames", type=int, default=17, help="frames per training clip (1 + k * temporal compression)")
    p.add_argument("--size", type=int, default=64, help="crop side in pixels (a multiple of the spatial compression)")
    p.add_argument("--train_videos", type=int, default=8, help="generated training videos (default: 8)")
    p.add_argument("--val_videos", type=int, default=2, help="generated held-out videos (default: 2)")
    p.add_argument("--video_frames", type=int, default=33, help="frames per generated video (default: 33)")
    p.add_argument(
        "--video_size",
        type=int,
        nargs=2,
        default=(96, 128),
        metavar=("H", "W"),
        help="generated video size (default: 96 128)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the data and the initial weights")
    p.set_defaults(func=run)


def step(number: int, text: str) -> None:
    print(f"\n[{number}/6] {text}", flush=True)


def cli(*argv: str) -> None:
    """Run a `vtok` subcommand in this process; a failure stops the demo with its message."""
    from .main import main

    code = main([str(a) for a in argv])
    if code:
        raise ValueError(f"demo step `vtok {argv[0]}` failed (exit code {code}); see its messages above")


def release_folder(args: argparse.Namespace) -> Path | None:
    """NVIDIA's release of the chosen model under --checkpoints, when it has been downloaded."""
    release = args.checkpoints / f"Cosmos-Tokenize1-{args.model}"
    return release if (release / "model.pt").is_file() or (release / "encoder.jit").is_file() else None


def small_start(args: argparse.Namespace, folder: Path) -> str:
    """Export a reduced-width tokenizer with random weights as a release-like folder; returns its description."""
    torch.manual_seed(args.seed)
    tok = build_tokenizer(args.model, **network_overrides(args)).eval()
    export_jit(tok, folder, dtype=torch.float32)
    params = sum(p.numel() for p in tok.parameters())
    return f"{args.model} at channels={args.channels}, {params / 1e6:.1f}M parameters, random weights"


def network_overrides(args: argparse.Namespace) -> dict[str, object]:
    return {"channels": args.channels, "num_res_blocks": args.num_res_blocks}


def train_overrides(
    args: argparse.Namespace, out: Path, start: Path, network: dict[str, object], from_release: bool
) -> list[str]:
    """The experiment of the chosen model with the demo's sizes, data and starting weights."""
    experiment = "Cosmos_Tokenize1_" + canonical_name(args.model).replace("-", "_") + "_HDVILA"
    lr = args.lr if args.lr is not None else (1e-4 if from_release else 3e-4)
    every = max(1, args.iterations // 30)
    argv = [
        f"experiment={experiment}",
        f"job.output_root={out / 'runs'}",
        f"job.project={JOB[0]}",
        f"job.group={JOB[1]}",
        f"job.name={args.model}",
        f"checkpoint.load_path={start}",
        "checkpoint.load_training_state=false",
        f"trainer.max_iter={args.iterations}",
        f"trainer.logging_iter={every}",
        f"checkpoint.save_iter={args.iterations}",
        f"trainer.validation_iter={args.iterations}",
        f"trainer.seed={args.seed}",
        f"optimizer.lr={lr}",
        f"scheduler.warmup={max(1, args.iterations // 10)}",
        "model.config.ema.warmup=true",
        "checkpoint.jit.dtype=float32",
        "checkpoint.jit.input_shape=null",
        f"dataloader_train.batch_size={args.batch_size}",
    ]
    argv += [f"model.config.network.{k}={v}" for k, v in network.items()]
    if not from_release:  # from random weights, beta1 0.9 learned faster than NVIDIA's fine-tuning 0.5 (measured)
        argv.append("optimizer.betas=[0.9,0.999]")
    if find_vgg16_weights() is None:
        argv.append("loss.perceptual.enabled=false")
    for loader, split in (("dataloader_train", "train"), ("dataloader_val", "val")):
        argv += [
            f"{loader}.dataset.video_pattern={out / 'videos' / split / '*.mp4'}",
            f"{loader}.dataset.val_fraction=0",
            f"{loader}.dataset.num_video_frames={args.frames}",
            f"{loader}.dataset.crop_height={args.size}",
            f"{loader}.dataset.crop_width={args.size}",
            f"{loader}.num_workers=1",
        ]
    return argv


def summary_table(metrics: dict, iterations: int) -> str:
    """PSNR/SSIM of the held-out videos before and after, from `vtok evaluate`'s metrics.json."""
    rows = [("before", metrics["models"]["B"]["mean"]), (f"after {iterations} it", metrics["models"]["A"]["mean"])]
    lines = [f"{'held-out videos':<18} {'PSNR (dB)':>10} {'SSIM':>8}"]
    lines += [f"{label:<18} {m['psnr']:>10.2f} {m['ssim']:>8.4f}" for label, m in rows]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    out = args.output_dir
    if args.iterations < 1:
        raise ValueError(f"--iterations must be at least 1, got {args.iterations}")
    release = release_folder(args)
    start = release or out / "start"
    argv = train_overrides(args, out, start, {} if release else network_overrides(args), release is not None)
    parse_train_args(argv)  # a bad size fails here, naming the key, before anything is made or removed
    if out.exists():
        print(f"replacing the previous demo in {out}")
        shutil.rmtree(out)

    step(1, f"generating {args.train_videos} training and {args.val_videos} held-out videos")
    height, width = args.video_size
    for split, count, seed in (("train", args.train_videos, args.seed), ("val", args.val_videos, args.seed + 1000)):
        write_textured_videos(out / "videos" / split, count, args.video_frames, height, width, seed=seed, prefix=split)
    val_pattern = str(out / "videos" / "val" / "*.mp4")

    step(2, "choosing the starting tokenizer")
    description = f"NVIDIA's released {args.model} ({release})" if release else small_start(args, start)
    print(f"starting from {description}")

    step(3, f"post-training for {args.iterations} iterations with the trainer (python -m vtok.train)")
    train_started = time.perf_counter()
    print("python -m vtok.train " + " ".join(argv))
    if train_run(argv):
        raise ValueError("demo step `python -m vtok.train` failed; see its messages above")
    train_seconds = time.perf_counter() - train_started
    job = out / "runs" / JOB[0] / JOB[1] / args.model
    checkpoints = job / "checkpoints"
    final = checkpoints / f"iter_{args.iterations:09d}"
    encoder, decoder = Path(f"{final}_enc.jit"), Path(f"{final}_dec.jit")
    before_encoder = start / "encoder.jit" if (start / "encoder.jit").is_file() else start

    step(4, "autoencoding the held-out videos before and after (vtok autoencode)")
    cli(
        "autoencode",
        "--video_pattern",
        val_pattern,
        "--checkpoint",
        before_encoder,
        "--output_dir",
        out / "reconstructions" / "before",
    )
    cli(
        "autoencode",
        "--video_pattern",
        val_pattern,
        "--checkpoint_enc",
        encoder,
        "--checkpoint_dec",
        decoder,
        "--output_dir",
        out / "reconstructions" / "after",
    )

    step(5, "evaluating before (B) against after (A) (vtok evaluate)")
    cli(
        "evaluate",
        "--video_pattern",
        val_pattern,
        "--checkpoint",
        encoder,
        "--baseline",
        before_encoder,
        "--output_dir",
        out / "evaluation",
    )
    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())

    step(6, "drawing the loss curve and the frame grid")
    losses = read_scalars(job / "tensorboard", ("train/total", "train/color", "train/lpips"))
    if len(losses) == 2:  # the colour term alone: it is the total
        losses = {"train/total (L1 colour)": losses["train/total"]}
    curve = plot_loss_curve(losses, out / "loss_curve.png", title=f"{args.model} post-training on generated videos")
    first_val = sorted((out / "videos" / "val").glob("*.mp4"))[0]
    rows = {
        "input": read_video(first_val)[0],
        "before": read_video(out / "reconstructions" / "before" / first_val.name)[0],
        "after": read_video(out / "reconstructions" / "after" / first_val.name)[0],
    }
    grid = frame_grid(rows, out / "frames_input_before_after.png")

    total = time.perf_counter() - started
    before, after = metrics["models"]["B"]["mean"]["psnr"], metrics["models"]["A"]["mean"]["psnr"]
    print("\n" + summary_table(metrics, args.iterations))
    print(f"time: {total / 60:.1f} min in all, {train_seconds / 60:.1f} min of training")
    print("made:")
    for label, path in (
        ("checkpoint", f"{final}.pt"),
        ("TorchScript", f"{encoder}, {decoder}, {final}_ema.jit"),
        ("reconstructions", out / "reconstructions"),
        ("metrics", out / "evaluation" / "metrics.csv"),
        ("loss curve", curve),
        ("frame grid", grid),
        ("training log", job / "stdout.log"),
    ):
        print(f"  {label:<16} {path}")
    if not after > before:
        print(f"vtok demo: PSNR did not improve ({before:.2f} -> {after:.2f} dB)")
        return 1
    return 0
