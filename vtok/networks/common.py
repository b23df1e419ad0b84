"""Small helpers shared by the video and image networks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def swish(x: torch.Tensor) -> torch.Tensor:
    return F.silu(x)


def new_level() -> nn.Module:
    """An encoder/decoder level: `block` and `attn` lists (keys `down.N.block.M.*`, `up.N.attn.M.*`)."""
    level = nn.Module()
    level.block, level.attn = nn.ModuleList(), nn.ModuleList()
    return level


def run_level(level: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """A level's ResNet blocks, each followed by its attention when the level has any."""
    for i, block in enumerate(level.block):
        h = block(h)
        if len(level.attn) > 0:
            h = level.attn[i](h)
    return h


def run_mid(mid: nn.Module, h: torch.Tensor) -> torch.Tensor:
    return mid.block_2(mid.attn_1(mid.block_1(h)))
