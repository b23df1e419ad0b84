"""Factorized causal video encoder and decoder (spec sections 1.4 and 1.5)."""

from __future__ import annotations

import torch
from torch import nn

from .common import new_level, run_level, run_mid, swish
from .config import TokenizerConfig
from .layers3d import (
    CausalHybridDownsample3d,
    CausalHybridUpsample3d,
    CausalNormalize,
    CausalResnetBlockFactorized3d,
    attention_pair,
    factorized_conv,
)
from .patching import Patcher3D, UnPatcher3D


def _mid(channels: int, dropout: float) -> nn.Module:
    mid = nn.Module()
    mid.block_1 = CausalResnetBlockFactorized3d(channels, channels, dropout)
    mid.attn_1 = attention_pair(channels)
    mid.block_2 = CausalResnetBlockFactorized3d(channels, channels, dropout)
    return mid


class EncoderFactorized(nn.Module):
    """Haar patcher, factorized ResNet levels with hybrid downsampling, mid attention, conv_out."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        ch, mult, dropout = cfg.channels, cfg.channels_mult, cfg.dropout
        self.patcher3d = Patcher3D(cfg.patch_size)
        self.conv_in = factorized_conv(cfg.in_channels * cfg.patch_size**3, ch)

        curr_res = cfg.resolution // cfg.patch_size
        in_mult = (1,) + mult
        self.down = nn.ModuleList()
        for i, m in enumerate(mult):
            level = new_level()
            block_in, block_out = ch * in_mult[i], ch * m
            for _ in range(cfg.num_res_blocks):
                level.block.append(CausalResnetBlockFactorized3d(block_in, block_out, dropout))
                block_in = block_out
                if curr_res in cfg.attn_resolutions:
                    level.attn.append(attention_pair(block_in))
            if i != len(mult) - 1:
                level.downsample = CausalHybridDownsample3d(
                    block_in, spatial_down=i < cfg.num_spatial_down, temporal_down=i < cfg.num_temporal_down
                )
                curr_res //= 2
            self.down.append(level)

        self.mid = _mid(block_in, dropout)
        self.norm_out = CausalNormalize(block_in)
        self.conv_out = factorized_conv(block_in, cfg.z_channels * cfg.z_factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(self.patcher3d(x))
        for i, level in enumerate(self.down):
            h = run_level(level, h)
            if i != len(self.down) - 1:
                h = level.downsample(h)
        h = run_mid(self.mid, h)
        return self.conv_out(swish(self.norm_out(h)))


class DecoderFactorized(nn.Module):
    """Mirror of the encoder: conv_in, mid, upsampling levels (up[0] runs last), Haar unpatcher."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        ch, mult, dropout = cfg.channels, cfg.channels_mult, cfg.dropout
        n_levels = len(mult)
        n_su, n_tu = cfg.num_spatial_down, cfg.num_temporal_down
        self.unpatcher3d = UnPatcher3D(cfg.patch_size)

        block_in = ch * mult[-1]
        curr_res = (cfg.resolution // cfg.patch_size) // 2 ** (n_levels - 1)
        self.conv_in = factorized_conv(cfg.z_channels, block_in)
        self.mid = _mid(block_in, dropout)

        self.up = nn.ModuleList()
        for i in reversed(range(n_levels)):
            level = new_level()
            block_out = ch * mult[i]
            for _ in range(cfg.num_res_blocks + 1):
                level.block.append(CausalResnetBlockFactorized3d(block_in, block_out, dropout))
                block_in = block_out
                if curr_res in cfg.attn_resolutions:
                    level.attn.append(attention_pair(block_in))
            if i != 0:
                r = n_levels - 1 - i
                temporal_up = r < n_tu if cfg.legacy_mode else 0 < r < n_tu + 1
                spatial_up = temporal_up or (r < n_su and n_su > n_tu)
                level.upsample = CausalHybridUpsample3d(block_in, spatial_up=spatial_up, temporal_up=temporal_up)
                curr_res *= 2
            self.up.insert(0, level)

        self.norm_out = CausalNormalize(block_in)
        self.conv_out = factorized_conv(block_in, cfg.out_channels * cfg.patch_size**3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = run_mid(self.mid, self.conv_in(z))
        for i in reversed(range(len(self.up))):
            level = self.up[i]
            h = run_level(level, h)
            if i != 0:
                h = level.upsample(h)
        return self.unpatcher3d(self.conv_out(swish(self.norm_out(h))))
