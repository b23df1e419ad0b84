"""Causal factorized 3D building blocks of the Cosmos-Tokenize1 video networks (docs/design.md#networks).

Attribute names (`conv3d`, `norm`, `conv1.0`, ...) are part of the checkpoint format: they give the
state_dict keys of NVIDIA's files, so they must not change. Everything is written with ops that trace
generically in T/H/W and that have bf16 kernels on CPU (no avg_pool3d).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import swish
from .conv_kernels import KernelConv3d
from .memory_format import memory_format_of


def prepend_first_frame(x: torch.Tensor, count: int) -> torch.Tensor:
    """Causal time padding: `count` copies of frame 0 in front of a [B,C,T,H,W] tensor, in x's memory format.

    torch.cat of an expanded frame returns the contiguous format, which channels_last_3d convs then copy back;
    for those, one buffer in x's format is written instead.
    """
    if count == 0:
        return x
    layout = memory_format_of(x)
    if layout == torch.contiguous_format or torch.jit.is_tracing():
        return torch.cat([x[:, :, :1].expand(-1, -1, count, -1, -1), x], dim=2)
    b, c, t, h, w = x.shape
    out = torch.empty((b, c, t + count, h, w), dtype=x.dtype, device=x.device, memory_format=layout)
    out[:, :, count:] = x
    out[:, :, :count] = x[:, :, :1]
    return out


class CausalConv3d(nn.Module):
    """Conv3d that pads time only on the past side (copies of frame 0) and space with zeros."""

    def __init__(
        self,
        chan_in: int,
        chan_out: int,
        kernel_size: int | tuple[int, int, int] = 3,
        stride: int = 1,
        time_stride: int = 1,
        padding: int = 1,
    ) -> None:
        super().__init__()
        k_t, k_h, k_w = (kernel_size,) * 3 if isinstance(kernel_size, int) else kernel_size
        if k_h % 2 == 0 or k_w % 2 == 0:
            raise ValueError("spatial kernel sizes must be odd")
        self.time_pad = (k_t - 1) + (1 - time_stride)
        self.conv3d = KernelConv3d(
            chan_in, chan_out, (k_t, k_h, k_w), stride=(time_stride, stride, stride), padding=(0, padding, padding)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3d(prepend_first_frame(x, self.time_pad))


def spatial_conv(chan_in: int, chan_out: int) -> CausalConv3d:
    return CausalConv3d(chan_in, chan_out, (1, 3, 3), padding=1)


def temporal_conv(chan_in: int, chan_out: int) -> CausalConv3d:
    return CausalConv3d(chan_in, chan_out, (3, 1, 1), padding=0)


def pointwise_conv(chan_in: int, chan_out: int) -> CausalConv3d:
    return CausalConv3d(chan_in, chan_out, 1, padding=0)


def factorized_conv(chan_in: int, chan_out: int) -> nn.Sequential:
    """A (1,3,3) spatial conv then a (3,1,1) causal temporal conv, with no nonlinearity between."""
    return nn.Sequential(spatial_conv(chan_in, chan_out), temporal_conv(chan_out, chan_out))


class CausalNormalize(nn.Module):
    """GroupNorm with one group applied to each frame on its own, so normalization never looks ahead."""

    def __init__(self, channels: int, num_groups: int = 1) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(num_groups, channels, eps=1e-6, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        return self.norm(frames).reshape(b, t, c, h, w).transpose(1, 2)


class CausalResnetBlockFactorized3d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = CausalNormalize(in_channels)
        self.conv1 = factorized_conv(in_channels, out_channels)
        self.norm2 = CausalNormalize(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = factorized_conv(out_channels, out_channels)
        self.nin_shortcut = pointwise_conv(in_channels, out_channels) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(self.dropout(swish(self.norm2(h))))
        return self.nin_shortcut(x) + h


class _AttnBlock(nn.Module):
    """Single-head self-attention with 1x1x1 q/k/v/out projections and a residual."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = CausalNormalize(channels)
        self.q = pointwise_conv(channels, channels)
        self.k = pointwise_conv(channels, channels)
        self.v = pointwise_conv(channels, channels)
        self.proj_out = pointwise_conv(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.norm(x)
        out = self.attend(self.q(n), self.k(n), self.v(n))
        return x + self.proj_out(out)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class CausalAttnBlock(_AttnBlock):
    """Spatial attention: the H*W positions of each frame attend to each other, frame by frame."""

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = q.shape

        def tokens(z: torch.Tensor) -> torch.Tensor:  # [B*T, 1, H*W, C]
            return z.permute(0, 2, 3, 4, 1).reshape(b * t, 1, h * w, c)

        out = F.scaled_dot_product_attention(tokens(q), tokens(k), tokens(v))
        return out.reshape(b, t, h, w, c).permute(0, 4, 1, 2, 3)


class CausalTemporalAttnBlock(_AttnBlock):
    """Temporal attention: each spatial position attends over time, frame t seeing only frames <= t."""

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = q.shape

        def tokens(z: torch.Tensor) -> torch.Tensor:  # [B*H*W, 1, T, C]
            return z.permute(0, 3, 4, 2, 1).reshape(b * h * w, 1, t, c)

        out = F.scaled_dot_product_attention(tokens(q), tokens(k), tokens(v), is_causal=True)
        return out.reshape(b, h, w, t, c).permute(0, 4, 3, 1, 2)


def attention_pair(channels: int) -> nn.Sequential:
    """Spatial then causal temporal attention: keys `.0.*` and `.1.*`."""
    return nn.Sequential(CausalAttnBlock(channels), CausalTemporalAttnBlock(channels))


def avg_pool_space(x: torch.Tensor) -> torch.Tensor:
    """Mean over 2x2 spatial blocks (H, W even), written with slices so bf16 runs on CPU."""
    return (x[..., 0::2, 0::2] + x[..., 0::2, 1::2] + x[..., 1::2, 0::2] + x[..., 1::2, 1::2]) * 0.25


def avg_pool_time(x: torch.Tensor) -> torch.Tensor:
    """Mean over consecutive frame pairs (T even)."""
    return (x[:, :, 0::2] + x[:, :, 1::2]) * 0.5


class CausalHybridDownsample3d(nn.Module):
    """Strided conv plus average pooling, in space and/or time; an identity when neither is asked."""

    def __init__(self, channels: int, spatial_down: bool, temporal_down: bool) -> None:
        super().__init__()
        self.spatial_down = spatial_down
        self.temporal_down = temporal_down
        if spatial_down:
            self.conv1 = CausalConv3d(channels, channels, (1, 3, 3), stride=2, padding=0)
        if temporal_down:
            self.conv2 = CausalConv3d(channels, channels, (3, 1, 1), time_stride=2, padding=0)
        if spatial_down or temporal_down:
            self.conv3 = pointwise_conv(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.spatial_down or self.temporal_down):
            return x
        if self.spatial_down:
            x = self.conv1(F.pad(x, (0, 1, 0, 1))) + avg_pool_space(x)
        if self.temporal_down:
            x = prepend_first_frame(x, 1)
            x = self.conv2(x) + avg_pool_time(x)
        return self.conv3(x)


class CausalHybridUpsample3d(nn.Module):
    """Frame repetition (T -> 2T-1) and/or nearest x2 in space, each followed by a residual conv."""

    def __init__(self, channels: int, spatial_up: bool, temporal_up: bool) -> None:
        super().__init__()
        self.spatial_up = spatial_up
        self.temporal_up = temporal_up
        if temporal_up:
            self.conv1 = CausalConv3d(channels, channels, (3, 1, 1), padding=0)
        if spatial_up:
            self.conv2 = CausalConv3d(channels, channels, (1, 3, 3), padding=1)
        if spatial_up or temporal_up:
            self.conv3 = pointwise_conv(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.spatial_up or self.temporal_up):
            return x
        if self.temporal_up:
            # Repeat each frame twice and drop the first: T -> 2T-1, and T=1 stays 1. Written without a
            # branch on T so a traced decoder upsamples at every length, whatever it was traced with.
            x = x.repeat_interleave(2, dim=2)[:, :, 1:]
            x = self.conv1(x) + x
        if self.spatial_up:
            x = x.repeat_interleave(2, dim=3).repeat_interleave(2, dim=4)
            x = self.conv2(x) + x
        return self.conv3(x)
