"""Small helpers shared by the video and image networks."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from .config import TokenizerConfig


def swish(x: torch.Tensor) -> torch.Tensor:
    return F.silu(x)


def new_level() -> nn.Module:
    """An encoder/decoder level: `block` and `attn` lists (keys `down.N.block.M.*`, `up.N.attn.M.*`)."""
    level = nn.Module()
    level.block, level.attn = nn.ModuleList(), nn.ModuleList()
    return level


def run_level(level: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """A level's ResNet blocks (each followed by its attention, if any), then its down/upsampler, if any."""
    for i, block in enumerate(level.block):
        h = block(h)
        if len(level.attn) > 0:
            h = level.attn[i](h)
    for name in ("downsample", "upsample"):
        if hasattr(level, name):
            h = getattr(level, name)(h)
    return h


def new_mid(
    block: Callable[..., nn.Module], attn: Callable[[int], nn.Module], channels: int, dropout: float
) -> nn.Module:
    """The bottleneck: `mid.block_1`, `mid.attn_1`, `mid.block_2`."""
    mid = nn.Module()
    mid.block_1 = block(channels, channels, dropout)
    mid.attn_1 = attn(channels)
    mid.block_2 = block(channels, channels, dropout)
    return mid


def run_mid(mid: nn.Module, h: torch.Tensor) -> torch.Tensor:
    return mid.block_2(mid.attn_1(mid.block_1(h)))


Factory = Callable[..., nn.Module]


def build_down_levels(
    cfg: TokenizerConfig, block: Factory, attn: Factory, downsample: Callable[[int, int], nn.Module | None]
) -> tuple[nn.ModuleList, int]:
    """Encoder levels `down.0..n-1`; `downsample(level, channels)` gives a level's downsampler or None.

    Returns the levels and the width they end with. An attention module follows each block of the
    levels whose nominal resolution is in `attn_resolutions` (none for the released configs).
    """
    ch, mult = cfg.channels, cfg.channels_mult
    curr_res = cfg.resolution // cfg.patch_size
    in_mult = (1,) + mult
    levels = nn.ModuleList()
    for i, m in enumerate(mult):
        level = new_level()
        block_in, block_out = ch * in_mult[i], ch * m
        for _ in range(cfg.num_res_blocks):
            level.block.append(block(block_in, block_out, cfg.dropout))
            block_in = block_out
            if curr_res in cfg.attn_resolutions:
                level.attn.append(attn(block_in))
        down = downsample(i, block_in)
        if down is not None:
            level.downsample = down
            curr_res //= 2
        levels.append(level)
    return levels, block_in


def build_up_levels(
    cfg: TokenizerConfig,
    curr_res: int,
    block: Factory,
    attn: Factory,
    upsample: Callable[[int, int], nn.Module | None],
) -> tuple[nn.ModuleList, int]:
    """Decoder levels, built from the deepest one and indexed so that `up[0]` runs last."""
    ch, mult = cfg.channels, cfg.channels_mult
    block_in = ch * mult[-1]
    levels = nn.ModuleList()
    for i in reversed(range(len(mult))):
        level = new_level()
        block_out = ch * mult[i]
        for _ in range(cfg.num_res_blocks + 1):
            level.block.append(block(block_in, block_out, cfg.dropout))
            block_in = block_out
            if curr_res in cfg.attn_resolutions:
                level.attn.append(attn(block_in))
        up = upsample(i, block_in)
        if up is not None:
            level.upsample = up
            curr_res *= 2
        levels.insert(0, level)
    return levels, block_in
