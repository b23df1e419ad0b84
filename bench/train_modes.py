"""Post-training modes compared in one run: what each trains, what it costs, what it gains, and what it keeps.

For CV4x8x8-360p and DV4x8x8-360p at reduced width, on generated textured videos (vtok.data.synthetic), a
starting tokenizer is trained with the trainer (mode `all`) for `--pretrain` steps on one set of videos; then
each mode post-trains it from that checkpoint for `--steps` steps on the same clips of another set:
- `all`: every weight (NVIDIA's recipe);
- `decoder`: `model.config.trainable=decoder` (encoder and quantizer frozen);
- `lora`: LoRA rank `--rank` (alpha 2 x rank) on the decoder's convolutions, `trainable=decoder`;
- `decoder+adv`: `trainable=decoder` plus the adversarial stage (patch2d discriminator of `--d_channels`).
The four trainers of a model live in one process (its own, one thread) and step in turn, so machine noise hits
them alike; they start from the same file with the same seed, data and hyper-parameters. Reported per model and
mode: trainable parameters; median CPU seconds per step (process time, which a shared CPU inflates less than wall
time); training memory beyond the weights, counted exactly: gradients, AdamW moments and the bytes autograd saves
for backward in a step (the activations, free of the allocator's noise in RSS); ratios to `all`; then, on
held-out videos of a third set, PSNR and SSIM of the saved `iter_N.pt` (regular weights; LPIPS too when
$VTOK_LPIPS_WEIGHTS is set) and the fraction of latent values (CV) or token indices (DV) bit-identical to the
start's. A first table gives the full-width parameter counts of each mode (meta device).

    python bench/train_modes.py                              # 16 channels, 9x64x64 clips; a few minutes
    python bench/train_modes.py --pretrain 300 --steps 100 --channels 24
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import torch

MODELS = ("CV4x8x8-360p", "DV4x8x8-360p")
MODES = ("all", "decoder", "lora", "decoder+adv")


def mode_overrides(mode: str, args: argparse.Namespace) -> list[str]:
    if mode == "all":
        return []
    out = ["model.config.trainable=decoder"]
    if mode == "lora":
        out += [f"model.config.lora.rank={args.rank}", f"model.config.lora.alpha={2 * args.rank}"]
    if mode == "decoder+adv":
        out += [
            "loss.adversarial.enabled=true",
            f"loss.adversarial.discriminator_channels={args.d_channels}",
            "loss.adversarial.lecam_weight=0.005",
        ]
    return out


def train_overrides(args: argparse.Namespace, model: str, videos: Path, steps: int, name: str) -> list[str]:
    """The model's experiment at the bench's sizes, on `videos`, for `steps` iterations, saving at the end."""
    out = [
        f"experiment=Cosmos_Tokenize1_{model.replace('-', '_')}_HDVILA",
        f"model.config.network.channels={args.channels}",
        "model.config.network.num_res_blocks=1",
        "checkpoint.load_path=null",
        "checkpoint.load_training_state=false",
        "checkpoint.jit.enabled=false",
        "trainer.run_validation=false",
        "trainer.tensorboard=false",
        "trainer.precision=fp32",
        f"trainer.max_iter={steps}",
        f"trainer.logging_iter={max(1, steps // 5)}",
        f"checkpoint.save_iter={steps}",
        f"optimizer.lr={args.lr}",
        "optimizer.betas=[0.9,0.999]",
        "scheduler.warmup=10",
        "model.config.ema.warmup=true",
        "loss.perceptual.enabled=false",
        "trainer.seed=0",
        f"job.output_root={videos.parent / 'runs'}",
        f"job.name={name}",
    ]
    for loader in ("dataloader_train", "dataloader_val"):
        out += [
            f"{loader}.dataset.video_pattern={videos / '*.mp4'}",
            f"{loader}.dataset.val_fraction=0",
            f"{loader}.dataset.num_video_frames={args.frames}",
            f"{loader}.dataset.crop_height={args.size}",
            f"{loader}.dataset.crop_width={args.size}",
            f"{loader}.num_workers=0",
        ]
    return out


def make_trainer(overrides: list[str]):
    from vtok.config import parse_train_args, resolve_now
    from vtok.training.data_stream import training_batches
    from vtok.training.distributed import DistInfo
    from vtok.training.trainer import Trainer

    config, _ = parse_train_args(overrides)
    trainer = Trainer(resolve_now(config, datetime(2026, 1, 1)), DistInfo())
    trainer.batches = training_batches(trainer.train_loader, 0, 1)
    return trainer


def saved_for_backward_bytes(trainer) -> int:
    """Bytes of the tensors autograd saves for backward in one training step (parameters excluded, each storage
    once): what a step's activations cost, without the allocator's noise in RSS."""
    params = {p.untyped_storage().data_ptr() for p in trainer.network.parameters()}
    if trainer.adversarial is not None:
        params |= {p.untyped_storage().data_ptr() for p in trainer.adversarial.parameters()}
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        trainer.train_step()
    return sum(seen.values())


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def child(args: argparse.Namespace, model: str, work: Path) -> list[dict]:
    """One model: train the start, then the four modes in turn, step by step; save and evaluate each."""
    torch.set_num_threads(1)
    start_trainer = make_trainer(train_overrides(args, model, work / "start", args.pretrain, f"{model}_start"))
    start_trainer.train()
    start = start_trainer.checkpoint_dir / f"iter_{args.pretrain:09d}.pt"
    del start_trainer
    trainers = {}
    for mode in MODES:
        overrides = train_overrides(args, model, work / "post", args.steps, f"{model}_{mode}")
        trainers[mode] = make_trainer([*overrides, f"checkpoint.load_path={start}", *mode_overrides(mode, args)])
    saved = {mode: saved_for_backward_bytes(t) for mode, t in trainers.items()}  # the first step, not timed
    cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(args.steps - 1):
        for mode, trainer in trainers.items():
            begin = time.process_time()
            trainer.train_step()
            cpu[mode].append(time.process_time() - begin)
    rows = []
    for mode, trainer in trainers.items():
        trainer.save()
        trainer.checkpointer.join()
        checkpoint = trainer.checkpoint_dir / f"iter_{trainer.iteration:09d}.pt"
        trainable = [p for p in trainer.network.parameters() if p.requires_grad]
        adam = tensor_bytes(v for state in trainer.optimizer.state.values() for v in state.values())
        row = {
            "model": model,
            "mode": mode,
            "trainable": sum(p.numel() for p in trainable),
            "params": sum(p.numel() for p in trainer.network.parameters()),
            "step_cpu_s": statistics.median(cpu[mode][1:] or cpu[mode]),
            "grads_mb": tensor_bytes(trainable) / 2**20,
            "adamw_mb": adam / 2**20,
            "saved_for_backward_mb": saved[mode] / 2**20,
        }
        if trainer.adversarial is not None:
            d_params = list(trainer.adversarial.discriminator.parameters())
            d_adam = tensor_bytes(v for state in trainer.d_optimizer.state.values() for v in state.values())
            row["discriminator_mb"] = (2 * tensor_bytes(d_params) + d_adam) / 2**20  # weights, grads, AdamW
        row["memory_mb"] = (
            row["grads_mb"] + row["adamw_mb"] + row["saved_for_backward_mb"] + row.get("discriminator_mb", 0)
        )
        row.update(evaluate(start, checkpoint, work / "held_out", args))
        rows.append(row)
    return rows


def held_out_clips(folder: Path, frames: int, size: int) -> list[torch.Tensor]:
    """The first `frames` frames of each held-out video, centre-cropped to size x size, [1,3,T,H,W] in [-1,1]."""
    from vtok.io.video import read_video

    clips = []
    for path in sorted(folder.glob("*.mp4")):
        video = torch.from_numpy(read_video(path)[0][:frames]).permute(3, 0, 1, 2).float() / 127.5 - 1
        _, _, h, w = video.shape
        top, left = (h - size) // 2, (w - size) // 2
        clips.append(video[None, :, :, top : top + size, left : left + size].contiguous())
    return clips


@torch.no_grad()
def evaluate(start: Path, checkpoint: Path, held_out: Path, args: argparse.Namespace) -> dict:
    """PSNR, SSIM (LPIPS) of `checkpoint` on the held-out clips, and the share of its latents or token indices
    equal to those of `start` (regular weights of both)."""
    from vtok.checkpoint import load_tokenizer
    from vtok.metrics import frame_mse, psnr_from_mse, ssim_per_frame, to_uint8
    from vtok.metrics.lpips import LPIPS, find_lpips_weights, lpips_per_frame

    before, after = (load_tokenizer(p, ema=False).eval() for p in (start, checkpoint))
    files = find_lpips_weights()
    lpips = LPIPS.from_files(*files) if files else None
    scores: dict[str, list[float]] = {"psnr": [], "ssim": [], "lpips": [], "psnr_start": []}
    same = total = 0
    for x in held_out_clips(held_out, args.frames, args.size):
        ref = to_uint8(x)[0].permute(1, 2, 3, 0)
        test = to_uint8(after(x).reconstructions)[0].permute(1, 2, 3, 0)
        scores["psnr"].append(psnr_from_mse(frame_mse(ref, test)).mean().item())
        scores["ssim"].append(ssim_per_frame(ref, test).mean().item())
        start_test = to_uint8(before(x).reconstructions)[0].permute(1, 2, 3, 0)
        scores["psnr_start"].append(psnr_from_mse(frame_mse(ref, start_test)).mean().item())
        if lpips is not None:
            scores["lpips"].append(lpips_per_frame(lpips, ref, test).mean().item())
        codes_before, codes_after = before.encode(x), after.encode(x)
        if isinstance(codes_before, tuple):  # DV: (indices, codes)
            codes_before, codes_after = codes_before[0], codes_after[0]
        same += int((codes_before == codes_after).sum())
        total += codes_before.numel()
    out = {k: statistics.mean(v) if v else None for k, v in scores.items()}
    return {**out, "unchanged": same / total}


def full_width_sizes(rank: int) -> list[dict]:
    """Trainable parameters of each mode for the released widths (built on the meta device)."""
    from vtok.losses.config import AdversarialConfig
    from vtok.networks import build_tokenizer
    from vtok.networks.discriminator import build_discriminator
    from vtok.networks.lora import LoRASettings
    from vtok.networks.trainable import apply_trainable

    d_params = sum(p.numel() for p in build_discriminator(AdversarialConfig().discriminator).parameters())
    rows = []
    for name in MODELS:
        row = {"model": name}
        for mode, trainable, lora in (("all", "all", None), ("decoder", "decoder", None), ("lora", "decoder", rank)):
            with torch.device("meta"):
                network = build_tokenizer(name)
                apply_trainable(network, trainable, LoRASettings(rank=lora) if lora else None)
            row[mode] = sum(p.numel() for p in network.parameters() if p.requires_grad)
        row["discriminator"] = d_params
        rows.append(row)
    return rows


def run_child(args: argparse.Namespace, model: str, work: Path) -> list[dict]:
    argv = [sys.executable, __file__, *sys.argv[1:], "--child", model, "--work", str(work)]
    done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        raise SystemExit(f"{model} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    print(
        f"\n{args.steps} post-training steps after {args.pretrain} of the start, {args.channels} channels, "
        f"clips {args.frames}x{args.size}x{args.size}, batch 1, lr {args.lr}, fp32, 1 thread; "
        f"held-out: {args.videos} videos (regular weights); memory = gradients + AdamW + saved for backward "
        "(+ discriminator weights, gradients, AdamW)"
    )
    print(
        f"{'model':14} {'mode':12} {'trainable':>10} {'s/step':>7} {'x all':>6} {'memory MB':>10} {'x all':>6} "
        f"{'PSNR':>6} {'start':>6} {'SSIM':>6} {'LPIPS':>6} {'unchanged':>10}"
    )
    for r in rows:
        base = next(b for b in rows if b["model"] == r["model"] and b["mode"] == "all")
        lpips = f"{r['lpips']:.4f}" if r["lpips"] is not None else "n/a"
        print(
            f"{r['model']:14} {r['mode']:12} {r['trainable']:>10,} {r['step_cpu_s']:>7.3f} "
            f"{r['step_cpu_s'] / base['step_cpu_s']:>6.2f} {r['memory_mb']:>10.1f} "
            f"{r['memory_mb'] / base['memory_mb']:>6.2f} {r['psnr']:>6.2f} {r['psnr_start']:>6.2f} "
            f"{r['ssim']:>6.4f} {lpips:>6} {r['unchanged']:>10.2%}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--pretrain", type=int, default=150, help="steps of the starting tokenizer (mode all)")
    parser.add_argument("--steps", type=int, default=40, help="post-training steps of every mode")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--d_channels", type=int, default=16, help="discriminator width (released models: 64)")
    parser.add_argument("--videos", type=int, default=6, help="videos per set (start, post-training, held out)")
    parser.add_argument("--json", type=Path, default=Path("bench/results/train_modes.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args, args.child, args.work)))
        return

    from vtok.data.synthetic import write_textured_videos

    started = time.perf_counter()
    sizes = full_width_sizes(args.rank)
    print(f"trainable parameters at the released widths (LoRA rank {args.rank} on the decoder's convs)")
    print(f"{'model':14} {'all':>12} {'decoder':>12} {'lora':>10} {'lora/all':>9} {'discriminator':>14}")
    for r in sizes:
        print(
            f"{r['model']:14} {r['all']:>12,} {r['decoder']:>12,} {r['lora']:>10,} {r['lora'] / r['all']:>8.2%} "
            f"{r['discriminator']:>14,}"
        )
    rows = []
    with tempfile.TemporaryDirectory(prefix="vtok_train_modes_") as tmp:
        work = Path(tmp)
        for label, seed in (("start", 0), ("post", 1000), ("held_out", 2000)):
            write_textured_videos(work / label, args.videos, 2 * args.frames + 1, 96, 128, seed=seed, prefix=label)
        for model in args.models:
            rows += run_child(args, model, work)
            print(f"  {model}: done ({time.perf_counter() - started:.0f} s)", flush=True)
    print_table(rows, args)
    print(f"(total {time.perf_counter() - started:.0f} s)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "date": datetime.now().isoformat(timespec="seconds"),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "full_width": sizes,
        "runs": rows,
    }
    args.json.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
