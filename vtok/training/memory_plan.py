"""The predicted peak memory per GPU of a training config, part by part, without allocating it.

A step's activations are measured on fake tensors (vtok.training.memory_step); the state that lives through
training is arithmetic on the parameter counts: weights in their dtype, gradients, AdamW's two fp32 moments,
the fp32 EMA, bf16_pure's fp32 master weights, DDP's gradient buckets, FSDP2's shards and gathered units. The
peak is the largest of three moments: the training step, the optimizer step and validation. Why this method
and what it leaves out: docs/design.md#memory-planner.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config.schema import Config
from .memory_step import StepKnobs, StepMemory, largest_crop, measure_step
from .precision import resolve_precision

GB = 2**30
ADAM_BYTES = 8  # exp_avg and exp_avg_sq in float32 per trainable element
FP32 = 4


@dataclass(frozen=True)
class MemoryKnobs:
    """The settings the planner reads and the fitter may change, as the config spells them."""

    precision: str  # resolved: fp32 | bf16_autocast | bf16_pure
    activation_checkpointing: bool
    perceptual_chunk_frames: int
    micro_batch: int  # dataloader_train.batch_size
    grad_accum: int  # trainer.grad_accum_iter
    fsdp: bool  # trainer.parallelism=fsdp with more than one rank

    def step_knobs(self, cuda: bool) -> StepKnobs:
        return StepKnobs(
            self.precision, self.activation_checkpointing, self.perceptual_chunk_frames, self.micro_batch, cuda
        )

    def overrides(self) -> dict[str, object]:
        """The knobs as `key=value` settings of the config."""
        return {
            "trainer.precision": self.precision,
            "trainer.activation_checkpointing": self.activation_checkpointing,
            "model.config.loss.config.perceptual.config.chunk_frames": self.perceptual_chunk_frames,
            "dataloader_train.batch_size": self.micro_batch,
            "trainer.grad_accum_iter": self.grad_accum,
            "trainer.parallelism": "fsdp" if self.fsdp else "ddp",
        }

    def describe(self) -> str:
        """The knobs as override text, e.g. `trainer.precision=bf16_autocast ...`."""
        return " ".join(f"{key}={str(value).lower()}" for key, value in self.overrides().items())


def planned_device_type(device: str) -> str:
    """The device type a plan is for: `trainer.device`, with `auto` meaning CUDA when this machine has it."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def knobs_of(config: Config, world_size: int, device_type: str) -> MemoryKnobs:
    """The knobs a config sets, with `precision=auto` resolved for `device_type`."""
    trainer = config.trainer
    return MemoryKnobs(
        precision=resolve_precision(trainer.precision, torch.device(device_type)),
        activation_checkpointing=trainer.activation_checkpointing,
        perceptual_chunk_frames=config.model.config.loss.config.perceptual.config.chunk_frames,
        micro_batch=config.dataloader_train.batch_size,
        grad_accum=trainer.grad_accum_iter,
        fsdp=trainer.parallelism == "fsdp" and world_size > 1,
    )


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per GPU of each part at the peak, and which moment of training the peak is."""

    knobs: MemoryKnobs
    world_size: int
    parts: dict[str, int]  # name -> bytes, summing to `peak`
    peak: int
    moment: str  # "training step", "optimizer step" or "validation"
    peaks: dict[str, int]  # each moment's peak
    parameters: int  # elements of the network
    trainable: int  # elements that train


def estimate_memory(
    config: Config, world_size: int = 1, device_type: str = "cuda", step: StepMemory | None = None
) -> MemoryEstimate:
    """The predicted peak of `config` on each of `world_size` ranks (`step`: a measured step to reuse)."""
    knobs = knobs_of(config, world_size, device_type)
    step = step or measure_step(config, knobs.step_knobs(device_type == "cuda"))
    return compose(config, knobs, step, world_size)


def compose(config: Config, knobs: MemoryKnobs, step: StepMemory, world_size: int) -> MemoryEstimate:
    """The estimate from a measured step and the knobs: the state's arithmetic and the three moments."""
    shards = world_size if knobs.fsdp else 1
    trainable = step.network.trainable
    state = {
        "parameters": step.network.bytes // shards,
        "master weights (fp32)": FP32 * trainable if knobs.precision == "bf16_pure" else 0,
        "optimizer (AdamW)": ADAM_BYTES * trainable // shards,
        "EMA (fp32)": FP32 * trainable // shards if config.model.config.ema.enabled else 0,
        "loss networks": step.loss_network_bytes,
        "DDP gradient buckets": step.grad_bytes if world_size > 1 and not knobs.fsdp else 0,
        # fp32 weights, gradients and AdamW moments of the discriminator(s), replicated (plus DDP's buckets)
        "discriminator": (FP32 * (2 + (world_size > 1)) + ADAM_BYTES) * step.discriminator_parameters,
        "FSDP gathered weights": step.unsharded_root_bytes + 2 * step.largest_block_bytes if knobs.fsdp else 0,
    }
    grads = step.grad_bytes // shards
    if knobs.fsdp:  # gradients are reduce-scattered per unit: one unsharded unit at a time, then the shard
        activations = step.step_peak_without_grads + step.largest_block_bytes
    elif knobs.grad_accum > 1:  # later micro-steps run with the whole gradient already there
        activations = max(step.step_peak - grads, step.step_peak_without_grads)
    else:
        activations = step.step_peak - grads
    optimizer_grads = FP32 * trainable if knobs.precision == "bf16_pure" else grads  # masters' fp32 gradients
    ema_copy = (FP32 if knobs.precision != "bf16_pure" else 2) * trainable // shards
    moments = {
        "training step": {"gradients": grads, "activations": activations},
        "optimizer step": {"gradients": optimizer_grads},
        "validation": {
            "EMA swap copy": ema_copy if config.model.config.ema.enabled else 0,
            "activations": step.validation_peak,
        },
    }
    if not config.trainer.run_validation:
        del moments["validation"]
    base = sum(state.values())
    peaks = {name: base + sum(extra.values()) for name, extra in moments.items()}
    moment = max(peaks, key=peaks.get)
    parts = {**state, **moments[moment]}
    return MemoryEstimate(
        knobs=knobs,
        world_size=world_size,
        parts={k: v for k, v in parts.items() if v},
        peak=peaks[moment],
        moment=moment,
        peaks=peaks,
        parameters=step.network.total,
        trainable=trainable,
    )


def format_estimate(config: Config, estimate: MemoryEstimate, title: str = "memory plan") -> str:
    """The estimate as a few aligned lines: what trains, at which shape, each part and the peak (GB = 2^30 B)."""
    knobs = estimate.knobs
    height, width = largest_crop(config.dataloader_train)
    frames = config.dataloader_train.dataset.num_video_frames
    ranks = f"{estimate.world_size} rank(s)" + (", FSDP2" if knobs.fsdp else ", DDP" if estimate.world_size > 1 else "")
    name = config.model.config.network_name or config.network.name
    lines = [
        f"{title}: {name}, micro-batch {knobs.micro_batch} x 3x{frames}x{height}x{width} "
        f"(x{knobs.grad_accum} accumulated), {knobs.precision}, {ranks}; "
        f"{estimate.parameters / 1e6:.1f}M parameters, {estimate.trainable / 1e6:.1f}M trainable",
    ]
    width_ = max(len(name) for name in estimate.parts)
    lines += [f"  {name:<{width_}}  {size / GB:8.2f} GB" for name, size in estimate.parts.items()]
    lines.append(f"  {'peak per GPU':<{width_}}  {estimate.peak / GB:8.2f} GB  ({estimate.moment})")
    others = ", ".join(f"{name} {size / GB:.2f} GB" for name, size in estimate.peaks.items() if name != estimate.moment)
    if others:
        lines.append(f"  other moments: {others}")
    lines.append(f"  settings: {knobs.describe()}")
    return "\n".join(lines)
