"""`trainer.memory_budget_gb`: the cheapest settings under which a config's predicted peak fits one GPU's budget.

The knobs, cheapest first (what each costs a run, docs/design.md#memory-planner): perceptual chunks (one more
VGG pass), FSDP2 over the ranks there are (communication), activation checkpointing (about one more tokenizer
forward), lower precision (fp32 -> bf16 autocast -> NVIDIA's bf16_pure: rounding), micro-batches with gradient
accumulation that keep the global batch (smaller GPU batches). Every combination gets a cost in which a costlier
knob outweighs all cheaper ones together; they are tried cheapest first. A knob the config already turned on
stays on. The plan fits when its peak leaves HEADROOM of the budget free.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from ..config.overrides import apply_values
from ..config.schema import Config
from .memory_plan import GB, MemoryEstimate, MemoryKnobs, compose, estimate_memory, format_estimate, knobs_of
from .memory_step import StepMemory, measure_step

HEADROOM = 0.10  # of the budget: the CUDA context, cuDNN workspaces and the caching allocator's fragmentation
CHUNK_FRAMES = 4  # perceptual frames per VGG pass when chunking
PRECISIONS = ("fp32", "bf16_autocast", "bf16_pure")  # most memory first


@dataclass(frozen=True)
class Fit:
    """The chosen knobs, their estimate, the estimate of the config as given, and the config with the knobs set."""

    knobs: MemoryKnobs
    estimate: MemoryEstimate
    plain: MemoryEstimate
    config: Config

    def describe(self, budget_gb: float) -> str:
        """One line for the log: the budget, the plain and fitted peaks and the settings that changed."""
        changed = {k: v for k, v in self.knobs.overrides().items() if self.plain.knobs.overrides()[k] != v}
        settings = " ".join(f"{k}={str(v).lower()}" for k, v in changed.items()) or "the config as given"
        return (
            f"trainer.memory_budget_gb={budget_gb:g}: predicted peak {self.plain.peak / GB:.2f} GB as configured, "
            f"{self.estimate.peak / GB:.2f} GB with {settings}"
        )


def usable_bytes(budget_gb: float) -> int:
    return int(budget_gb * (1 - HEADROOM) * GB)


def candidates(start: MemoryKnobs, world_size: int, perceptual: bool = True) -> list[tuple[int, MemoryKnobs]]:
    """(cost, knobs) of every setting the fitter may choose from `start`, cheapest first (`perceptual`: the
    perceptual term is on, so chunking it is a knob)."""
    chunks = [(0, start.perceptual_chunk_frames)]
    if start.perceptual_chunk_frames == 0 and perceptual:
        chunks.append((1, CHUNK_FRAMES))
    fsdps = [(0, start.fsdp)] + ([(2, True)] if not start.fsdp and world_size > 1 else [])
    ckpts = [(0, True)] if start.activation_checkpointing else [(0, False), (4, True)]
    first = PRECISIONS.index(start.precision)
    precisions = [(8 * step, p) for step, p in enumerate(PRECISIONS[first:])]
    global_micro = start.micro_batch * start.grad_accum
    micros = [
        (32 * level, m)
        for level, m in enumerate(d for d in range(start.micro_batch, 0, -1) if not start.micro_batch % d)
    ]
    found = []
    for (c1, chunk), (c2, fsdp), (c3, ckpt), (c4, precision), (c5, micro) in itertools.product(
        chunks, fsdps, ckpts, precisions, micros
    ):
        if fsdp and precision == "bf16_pure":  # the trainer refuses the pair
            continue
        knobs = MemoryKnobs(precision, ckpt, chunk, micro, global_micro // micro, fsdp)
        found.append((c1 + c2 + c3 + c4 + c5, knobs))
    return sorted(found, key=lambda item: item[0])


def fit_memory(config: Config, budget_gb: float, world_size: int, device_type: str) -> Fit:
    """The cheapest knobs whose predicted peak fits `budget_gb` per GPU; ValueError in one line when none does."""
    start = knobs_of(config, world_size, device_type)
    cuda = device_type == "cuda"
    steps: dict = {}

    def estimate(knobs: MemoryKnobs) -> MemoryEstimate:
        key = knobs.step_knobs(cuda)
        if key not in steps:
            steps[key] = measure_step(with_knobs(config, knobs), key)
        step: StepMemory = steps[key]
        return compose(with_knobs(config, knobs), knobs, step, world_size)

    plain = estimate(start)
    limit = usable_bytes(budget_gb)
    options = candidates(start, world_size, config.model.config.loss.config.perceptual.config.needed)
    smallest = min((knobs for _, knobs in options), key=_memory_order)
    lowest = estimate(smallest)
    if lowest.peak > limit:
        raise ValueError(_refusal(budget_gb, lowest))
    for _, knobs in options:
        result = lowest if knobs == smallest else estimate(knobs)
        if result.peak <= limit:
            return Fit(knobs, result, plain, with_knobs(config, knobs))
    raise AssertionError("the smallest plan fits, so some candidate does")  # unreachable


def _memory_order(knobs: MemoryKnobs) -> tuple:
    """Sort key putting the setting expected to need the least memory first: every saving knob on."""
    return (
        -knobs.activation_checkpointing,
        -bool(knobs.perceptual_chunk_frames),
        -knobs.fsdp,
        knobs.micro_batch,
        -PRECISIONS.index(knobs.precision),
    )


def _refusal(budget_gb: float, lowest: MemoryEstimate) -> str:
    knobs = lowest.knobs
    missing = lowest.peak / (1 - HEADROOM) / GB - budget_gb
    return (
        f"trainer.memory_budget_gb={budget_gb:g}: nothing fits; the smallest plan ({knobs.describe()}) needs "
        f"{lowest.peak / GB:.2f} GB per GPU plus {HEADROOM:.0%} headroom, {missing:.2f} GB more than the budget: "
        f"use a bigger budget, more GPUs with trainer.parallelism=fsdp, or shorter clips / smaller crops "
        "(dataloader_train.dataset.num_video_frames, crop_height)"
    )


def with_knobs(config: Config, knobs: MemoryKnobs) -> Config:
    """A copy of `config` with the knobs set (keys as `MemoryKnobs.overrides` names them)."""
    return apply_values(config, knobs.overrides())


def apply_memory_budget(config: Config, world_size: int, device_type: str) -> tuple[Config, Fit | None]:
    """The config fitted to `trainer.memory_budget_gb` (unchanged, None, when the budget is 0: off)."""
    budget = config.trainer.memory_budget_gb
    if not budget:
        return config, None
    fit = fit_memory(config, budget, world_size, device_type)
    return fit.config, fit


def plan_report(config: Config, world_size: int, device_type: str) -> str:
    """What `--plan` prints: the config's estimate, and with `trainer.memory_budget_gb` the fitted one (or why not)."""
    budget = config.trainer.memory_budget_gb
    if not budget:
        return format_estimate(config, estimate_memory(config, world_size, device_type))
    try:
        fit = fit_memory(config, budget, world_size, device_type)
    except ValueError as err:
        plain = format_estimate(config, estimate_memory(config, world_size, device_type))
        return f"{plain}\n{err}"
    fitted = format_estimate(
        fit.config, fit.estimate, f"fitted to {budget:g} GB (usable {usable_bytes(budget) / GB:.2f} GB)"
    )
    return f"{format_estimate(config, fit.plain)}\n{fitted}"
