"""Factorized causal video encoder and decoder, with NVIDIA's names and stage placement (docs/design.md#networks)."""

from __future__ import annotations

import torch
from torch import nn

from .common import build_down_levels, build_up_levels, new_mid, run_level, run_mid, swish
from .config import TokenizerConfig
from .layers3d import (
    CausalHybridDownsample3d,
    CausalHybridUpsample3d,
    CausalNormalize,
    CausalResnetBlockFactorized3d,
    attention_pair,
    factorized_conv,
)
from .memory_format import memory_format_of
from .patching import Patcher3D, UnPatcher3D


class EncoderFactorized(nn.Module):
    """Haar patcher, factorized ResNet levels with hybrid downsampling, mid attention, conv_out."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        ch, mult, dropout = cfg.channels, cfg.channels_mult, cfg.dropout
        self.patcher3d = Patcher3D(cfg.patch_size)
        self.conv_in = factorized_conv(cfg.in_channels * cfg.patch_size**3, ch)

        self.down, block_in = build_down_levels(
            cfg,
            CausalResnetBlockFactorized3d,
            attention_pair,
            lambda i, c: (
                CausalHybridDownsample3d(
                    c, spatial_down=i < cfg.num_spatial_down, temporal_down=i < cfg.num_temporal_down
                )
                if i != len(mult) - 1
                else None
            ),
        )
        self.mid = new_mid(CausalResnetBlockFactorized3d, attention_pair, block_in, dropout)
        self.norm_out = CausalNormalize(block_in)
        self.conv_out = factorized_conv(block_in, cfg.z_channels * cfg.z_factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.patcher3d(x)  # the Haar bands come out contiguous: give conv_in its weights' layout
        h = self.conv_in(h.contiguous(memory_format=memory_format_of(self.conv_in[0].conv3d.weight)))
        for level in self.down:
            h = run_level(level, h)
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
        self.conv_in = factorized_conv(cfg.z_channels, block_in)
        self.mid = new_mid(CausalResnetBlockFactorized3d, attention_pair, block_in, dropout)

        def upsample(i: int, channels: int) -> CausalHybridUpsample3d | None:
            if i == 0:
                return None
            r = n_levels - 1 - i
            temporal_up = r < n_tu if cfg.legacy_mode else 0 < r < n_tu + 1
            spatial_up = temporal_up or (r < n_su and n_su > n_tu)
            return CausalHybridUpsample3d(channels, spatial_up=spatial_up, temporal_up=temporal_up)

        curr_res = (cfg.resolution // cfg.patch_size) // 2 ** (n_levels - 1)
        self.up, block_in = build_up_levels(cfg, curr_res, CausalResnetBlockFactorized3d, attention_pair, upsample)

        self.norm_out = CausalNormalize(block_in)
        self.conv_out = factorized_conv(block_in, cfg.out_channels * cfg.patch_size**3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = run_mid(self.mid, self.conv_in(z))
        for level in reversed(self.up):
            h = run_level(level, h)
        return self.unpatcher3d(self.conv_out(swish(self.norm_out(h))))
