"""Haar wavelet patchers (docs/design.md#networks): lossless space/time-to-channel transforms.

One Haar round maps each pair (a, b) along an axis to ((a+b)/2, (a-b)/2) and stacks the sub-bands on
the channel axis, in the reference's band order (time, then height, then width; low before high). With
this normalization the reference's 1/sqrt(2) filters and its 2*sqrt(2) (3D) or 2 (2D) rescale collapse
to powers of two, so the inverse (a = L+H, b = L-H) is exact. The buffers exist only so state_dicts
keep NVIDIA's keys; the math does not read them.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers3d import prepend_first_frame


def _split_pairs(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Halves (low, high) along `dim`; an odd size is first reflect-padded by one sample at the end."""
    if x.shape[dim] % 2:
        x = torch.cat([x, x.narrow(dim, x.shape[dim] - 2, 1)], dim=dim)
    a, b = x.unflatten(dim, (-1, 2)).unbind(dim + 1)
    return (a + b) * 0.5, (a - b) * 0.5


def _merge_pairs(low: torch.Tensor, high: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.stack([low + high, low - high], dim=dim + 1).flatten(dim, dim + 1)


def haar_analysis(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """One Haar round over `dims` (the first one most significant in the band index)."""
    bands = [x]
    for dim in dims:
        bands = [half for band in bands for half in _split_pairs(band, dim)]
    return torch.cat(bands, dim=1)


def haar_synthesis(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Inverse of `haar_analysis`."""
    bands = list(x.chunk(2 ** len(dims), dim=1))
    for dim in reversed(dims):
        bands = [_merge_pairs(bands[i], bands[i + 1], dim) for i in range(0, len(bands), 2)]
    return bands[0]


class _HaarBuffers(nn.Module):
    def __init__(self, patch_size: int) -> None:
        super().__init__()
        if patch_size < 1 or patch_size & (patch_size - 1):
            raise ValueError(f"patch_size={patch_size} must be a power of two")
        self.patch_size = patch_size
        self.rounds = int(math.log2(patch_size))
        self.register_buffer("wavelets", torch.full((2,), 1 / math.sqrt(2), dtype=torch.float32))
        self.register_buffer("_arange", torch.arange(2))


class Patcher3D(_HaarBuffers):
    """[B,C,T,H,W] -> [B, C*ps^3, (T+ps-1)/ps, H/ps, W/ps]; frame 0 is repeated ps times first."""

    def __init__(self, patch_size: int) -> None:
        super().__init__(patch_size)
        self.register_buffer("patch_size_buffer", torch.tensor([patch_size], dtype=torch.int32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = prepend_first_frame(x, self.patch_size - 1)
        for _ in range(self.rounds):
            x = haar_analysis(x, (2, 3, 4))
        return x


class UnPatcher3D(_HaarBuffers):
    """Inverse of Patcher3D; drops the ps-1 extra leading frames."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.rounds):
            x = haar_synthesis(x, (2, 3, 4))
        return x[:, :, self.patch_size - 1 :]


class Patcher(_HaarBuffers):
    """2D Haar patcher for images: [B,C,H,W] -> [B, C*ps^2, H/ps, W/ps] (band order W, then H)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.rounds):
            x = haar_analysis(x, (3, 2))
        return x


class UnPatcher(_HaarBuffers):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.rounds):
            x = haar_synthesis(x, (3, 2))
        return x
