"""AdamW and the warmup LR schedules (docs/design.md#optimizer), and NVIDIA's FusedAdam/LambdaLR states in them.

NVIDIA's FusedAdam keeps `step` in each param group (an int32 tensor) and `lr` as a tensor; torch's AdamW
keeps `step` per parameter. `adapt_optimizer_state` converts the first into the second, and
`export_optimizer_state` adds the group-level `step` and `bias_correction` back, so files move both ways.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

from ..config.schema import OptimizerConfig, SchedulerConfig

HPARAMS = ("lr", "betas", "eps", "weight_decay")


def build_optimizer(
    params: Iterable[torch.nn.Parameter], config: OptimizerConfig, device: torch.device
) -> torch.optim.AdamW:
    """AdamW with decoupled weight decay; fused (one kernel for all parameters) on CUDA and CPU unless
    `optimizer.fused` says otherwise: on a 2-core CPU the per-parameter loop took 20x longer for a small model."""
    fused = config.fused if config.fused is not None else device.type in ("cuda", "cpu")
    return torch.optim.AdamW(
        list(params),
        lr=config.lr,
        betas=tuple(config.betas),
        eps=config.eps,
        weight_decay=config.weight_decay,
        fused=fused or None,
    )


@torch.no_grad()
def match_param_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Store each loaded state tensor (exp_avg, ...) in its parameter's memory layout: fused AdamW walks them in
    memory order, so a contiguous moment next to a channels_last parameter would pair the wrong elements."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and value.shape == p.shape and value.stride() != p.stride():
                    state[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


def lr_factor(config: SchedulerConfig, base_lr: float) -> Callable[[int], float]:
    """The LR multiplier by iteration: `(it+1)/warmup` during warmup, then 1 (or cosine down to min_lr)."""

    def factor(it: int) -> float:
        if it < config.warmup:
            return (it + 1) / config.warmup
        if config.name == "warmup":
            return 1.0
        progress = min(1.0, (it - config.warmup) / (config.lr_decay_iters - config.warmup))
        floor = config.min_lr / base_lr
        return floor + 0.5 * (1.0 - floor) * (1.0 + math.cos(math.pi * progress))

    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, config: SchedulerConfig) -> LambdaLR:
    """NVIDIA's WarmupLambdaLR (or WarmupCosineLR), stepped once per optimizer step."""
    return LambdaLR(optimizer, lr_factor(config, optimizer.param_groups[0]["lr"]))


def adapt_optimizer_state(state: dict[str, Any]) -> dict[str, Any]:
    """An optimizer state dict torch's AdamW loads: NVIDIA's group `step` copied to each param, tensors to floats."""
    state = copy.copy(state)
    groups = [dict(g) for g in state["param_groups"]]
    per_param = {k: dict(v) for k, v in state.get("state", {}).items()}
    for group in groups:
        group_step = group.pop("step", None)
        group.pop("bias_correction", None)
        if isinstance(group.get("lr"), torch.Tensor):
            group["lr"] = float(group["lr"])
        for index in group["params"]:
            entry = per_param.get(index)
            if entry is not None and "step" not in entry and group_step is not None:
                entry["step"] = torch.tensor(float(torch.as_tensor(group_step).flatten()[0]), dtype=torch.float32)
    state["param_groups"], state["state"] = groups, per_param
    return state


def export_optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's state dict with NVIDIA's group-level `step` (int32 [1]) and `bias_correction` added."""
    return with_group_step(optimizer.state_dict())


def with_group_step(state: dict[str, Any]) -> dict[str, Any]:
    """An integer-indexed AdamW state dict with NVIDIA's group-level `step` and `bias_correction` (in place)."""
    for group in state.get("param_groups", []):
        steps = [state["state"][i]["step"] for i in group["params"] if "step" in state["state"].get(i, {})]
        group["step"] = torch.tensor([int(steps[0]) if steps else 0], dtype=torch.int32)
        group["bias_correction"] = True
    return state


def adapt_scheduler_state(state: dict[str, Any]) -> dict[str, Any]:
    """A LambdaLR state dict without stored lambda objects (NVIDIA's may hold its scheduler's attributes)."""
    state = dict(state)
    state["lr_lambdas"] = [None] * len(state.get("base_lrs", [None]))
    state.pop("_lr_lambdas", None)
    return state


def apply_config_hparams(
    optimizer: torch.optim.Optimizer, scheduler: LambdaLR, config: OptimizerConfig, iteration: int
) -> None:
    """Overwrite loaded lr/betas/eps/weight decay with the config's, with the LR of `iteration`'s schedule."""
    scheduler.base_lrs = [config.lr for _ in optimizer.param_groups]
    for group, factor in zip(optimizer.param_groups, scheduler.lr_lambdas):
        group.update(
            initial_lr=config.lr,
            lr=config.lr * factor(iteration),
            betas=tuple(config.betas),
            eps=config.eps,
            weight_decay=config.weight_decay,
        )
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]


def describe_hparams(optimizer: torch.optim.Optimizer, scheduler: LambdaLR) -> str:
    """One line: current lr, base lr, betas, eps and weight decay."""
    group = optimizer.param_groups[0]
    return (
        f"lr {float(group['lr']):.3g} (base {scheduler.base_lrs[0]:.3g}), betas {tuple(group['betas'])}, "
        f"eps {group['eps']:.3g}, weight_decay {group['weight_decay']:.3g}"
    )
