"""Sizes and step-time overheads of the post-training modes' building blocks (before trainer integration).

Prints (1) parameters of LoRA adapters on the decoder's Conv3d layers and of decoder-only training for the
full-width CV4x8x8 and DV4x8x8 (built on the meta device, nothing allocated), (2) discriminator parameter
counts, and (3) the time of one training step (forward, L1 loss, backward, AdamW) of a small tokenizer in
each mode, the modes interleaved step by step so machine noise hits them alike, as ratios to `all`:
`all`, `decoder` (trainable=decoder), `lora` (rank 8 on the decoder convs, base frozen), and `all+adv`
(the generator term with the adaptive weight, then a discriminator step). The full mode comparison with
quality and memory comes with the trainer integration.

    python bench/train_modes.py                         # CV4x8x8, 16 channels, 9x64x64 clips, 1 thread
    python bench/train_modes.py --channels 32 --steps 8 --discriminator both
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import datetime
from pathlib import Path

import torch

import vtok
from vtok.losses.adversarial import Adversarial
from vtok.networks.discriminator import build_discriminator
from vtok.networks.lora import LoRASettings, add_lora, default_targets, lora_parameter_count
from vtok.networks.trainable import apply_trainable, last_layer_weight

MODES = ("all", "decoder", "lora", "all+adv")


def count(params) -> int:
    return sum(p.numel() for p in params)


def sizes(rank: int) -> list[dict]:
    rows = []
    for name in ("CV4x8x8-360p", "DV4x8x8-360p"):
        with torch.device("meta"):
            network = vtok.build_tokenizer(name)
            total = count(network.parameters())
            apply_trainable(network, "decoder")
            decoder = count(p for p in network.parameters() if p.requires_grad)
            convs = len(default_targets(network))
            add_lora(network, LoRASettings(rank=rank))
            adapters = lora_parameter_count(network)
        rows.append(
            {
                "model": name,
                "params": total,
                "decoder_params": decoder,
                "decoder_convs": convs,
                f"lora{rank}_params": adapters,
            }
        )
    return rows


def discriminator_sizes() -> dict[str, int]:
    return {kind: count(build_discriminator(kind).parameters()) for kind in ("patch2d", "patch3d", "both")}


class Mode:
    """One tokenizer (same initial weights in every mode), its optimizer, and the adversarial stage if any."""

    def __init__(self, mode: str, args: argparse.Namespace) -> None:
        torch.manual_seed(0)
        self.network = vtok.build_tokenizer(args.model, channels=args.channels, num_res_blocks=1).train()
        lora = LoRASettings(rank=args.rank) if mode == "lora" else None
        apply_trainable(self.network, "decoder" if mode == "decoder" else "all", lora)
        self.optimizer = torch.optim.AdamW([p for p in self.network.parameters() if p.requires_grad], lr=1e-4)
        self.adversarial = None
        if mode == "all+adv":
            self.adversarial = Adversarial(build_discriminator(args.discriminator), lecam_weight=0.005)
            self.d_optimizer = torch.optim.AdamW(self.adversarial.discriminator.parameters(), lr=1e-4)
        self.trainable = count(p for p in self.network.parameters() if p.requires_grad)

    def step(self, x: torch.Tensor) -> tuple[float, float]:
        """(CPU seconds of the tokenizer's step, of the discriminator's step): process time, all threads, which
        other jobs on a shared machine inflate far less than wall time."""
        start = time.process_time()
        fake = self.network(x).reconstructions
        loss = (fake - x).abs().mean()
        if self.adversarial is not None:
            g_loss, _ = self.adversarial.generator_term(fake, loss, last_layer_weight(self.network))
            loss = loss + g_loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        middle = time.process_time()
        if self.adversarial is not None:
            d_loss, _ = self.adversarial.discriminator_step(x, fake.detach())
            self.d_optimizer.zero_grad(set_to_none=True)
            d_loss.backward()
            self.d_optimizer.step()
        return middle - start, time.process_time() - middle


def step_times(args: argparse.Namespace) -> list[dict]:
    modes = {name: Mode(name, args) for name in MODES}
    x = torch.rand(1, 3, args.frames, args.height, args.width, generator=torch.Generator().manual_seed(1)) * 2 - 1
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in MODES}
    for step in range(args.warmup + args.steps):
        for name, mode in modes.items():
            measured = mode.step(x)
            if step >= args.warmup:
                times[name].append(measured)
    base = statistics.median(g + d for g, d in times["all"])
    rows = []
    for name, mode in modes.items():
        gen = statistics.median(g for g, _ in times[name])
        disc = statistics.median(d for _, d in times[name])
        rows.append(
            {
                "mode": name,
                "trainable_params": mode.trainable,
                "tokenizer_step_cpu_s": gen,
                "discriminator_step_cpu_s": disc,
                "ratio_to_all": (gen + disc) / base,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="CV4x8x8-360p")
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--discriminator", default="patch2d", choices=("patch2d", "patch3d", "both"))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: OpenMP threads spin on a shared CPU and inflate CPU time)",
    )
    parser.add_argument("--json", type=Path, default=Path("bench/results/train_modes.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    size_rows = sizes(args.rank)
    print(f"{'model':14} {'params':>12} {'decoder':>12} {'convs':>6} {f'lora{args.rank}':>10} {'lora/decoder':>13}")
    for r in size_rows:
        lora = r[f"lora{args.rank}_params"]
        print(
            f"{r['model']:14} {r['params']:>12,} {r['decoder_params']:>12,} {r['decoder_convs']:>6} {lora:>10,} "
            f"{lora / r['decoder_params']:>12.2%}"
        )
    d_rows = discriminator_sizes()
    print("discriminator params (64 channels, 3 layers): " + ", ".join(f"{k} {v:,}" for k, v in d_rows.items()))

    print(
        f"\nstep time, {args.model} at {args.channels} channels, clip {args.frames}x{args.height}x{args.width}, "
        f"median CPU seconds of {args.steps} steps (after {args.warmup} warm-up), {torch.get_num_threads()} threads"
    )
    time_rows = step_times(args)
    print(f"{'mode':10} {'trainable':>11} {'tokenizer cpu s':>16} {'D step cpu s':>13} {'x all':>7}")
    for r in time_rows:
        print(
            f"{r['mode']:10} {r['trainable_params']:>11,} {r['tokenizer_step_cpu_s']:>16.3f} "
            f"{r['discriminator_step_cpu_s']:>13.3f} {r['ratio_to_all']:>7.2f}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "date": datetime.now().isoformat(timespec="seconds"),
                "args": vars(args) | {"json": str(args.json)},
                "sizes": size_rows,
                "discriminators": d_rows,
                "step_times": time_rows,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
