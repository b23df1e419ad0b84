"""2D encoder/decoder of the Cosmos-Tokenize1 image models LDM-style (docs/design.md#networks)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import build_down_levels, build_up_levels, new_mid, run_level, run_mid, swish
from .config import TokenizerConfig
from .patching import Patcher, UnPatcher


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6, affine=True)


def conv3x3(chan_in: int, chan_out: int) -> nn.Conv2d:
    return nn.Conv2d(chan_in, chan_out, 3, padding=1)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = conv3x3(in_channels, out_channels)
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(self.dropout(swish(self.norm2(h))))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention over all H*W positions."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.norm(x)
        b, c, h, w = x.shape

        def tokens(z: torch.Tensor) -> torch.Tensor:  # [B, 1, H*W, C]
            return z.flatten(2).transpose(1, 2).unsqueeze(1)

        out = F.scaled_dot_product_attention(tokens(self.q(n)), tokens(self.k(n)), tokens(self.v(n)))
        return x + self.proj_out(out.squeeze(1).transpose(1, 2).reshape(b, c, h, w))


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = conv3x3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3))


class Encoder(nn.Module):
    """Haar patcher, ResNet levels with strided-conv downsampling, mid attention, conv_out."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        ch, dropout = cfg.channels, cfg.dropout
        n_down = cfg.num_spatial_down
        self.patcher = Patcher(cfg.patch_size)
        self.conv_in = conv3x3(cfg.in_channels * cfg.patch_size**2, ch)

        self.down, block_in = build_down_levels(
            cfg, ResnetBlock, AttnBlock, lambda i, c: Downsample(c) if i < n_down else None
        )
        self.mid = new_mid(ResnetBlock, AttnBlock, block_in, dropout)
        self.norm_out = group_norm(block_in)
        self.conv_out = conv3x3(block_in, cfg.z_channels * cfg.z_factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(self.patcher(x))
        for level in self.down:
            h = run_level(level, h)
        h = run_mid(self.mid, h)
        return self.conv_out(swish(self.norm_out(h)))


class Decoder(nn.Module):
    """Mirror of the encoder with nearest-neighbour upsampling; `up[0]` runs last."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        ch, mult, dropout = cfg.channels, cfg.channels_mult, cfg.dropout
        n_levels = len(mult)
        first_up = n_levels - cfg.num_spatial_down  # upsample in the deepest num_spatial_down levels
        self.unpatcher = UnPatcher(cfg.patch_size)

        block_in = ch * mult[-1]
        self.conv_in = conv3x3(cfg.z_channels, block_in)
        self.mid = new_mid(ResnetBlock, AttnBlock, block_in, dropout)
        curr_res = (cfg.resolution // cfg.patch_size) // 2**cfg.num_spatial_down
        self.up, block_in = build_up_levels(
            cfg,
            curr_res,
            ResnetBlock,
            AttnBlock,
            lambda i, c: Upsample(c) if i >= first_up else None,
        )

        self.norm_out = group_norm(block_in)
        self.conv_out = conv3x3(block_in, cfg.out_channels * cfg.patch_size**2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = run_mid(self.mid, self.conv_in(z))
        for level in reversed(self.up):
            h = run_level(level, h)
        return self.unpatcher(self.conv_out(swish(self.norm_out(h))))
