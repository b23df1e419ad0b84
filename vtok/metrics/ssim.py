"""Per-frame SSIM equal to `skimage.metrics.structural_similarity` with its defaults, in torch.

skimage (data_range=255, channel_axis=-1) filters each channel with a 7x7 box (reflect padding), uses
the sample covariance (N/(N-1)), K1=0.01, K2=0.03, averages the SSIM map after cropping 3 pixels at
each border, then averages the channels. The cropped region is exactly where the 7x7 window fits, so a
'valid' 7x7 average pool gives the same numbers without padding. Runs in float64 on any device,
a few frames at a time so 720p clips keep memory bounded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .psnr import PEAK, check_frame_pair

WIN_SIZE = 7
K1, K2 = 0.01, 0.03
CHUNK_PIXELS = 1 << 22  # float64 values per filtered map in one chunk (32 MiB); at least one frame


def _box_mean(x: torch.Tensor) -> torch.Tensor:
    """Separable 7x7 mean over the last two dims, 'valid' region only."""
    x = F.avg_pool2d(x, (WIN_SIZE, 1), stride=1)
    return F.avg_pool2d(x, (1, WIN_SIZE), stride=1)


def _ssim_chunk(reference: torch.Tensor, test: torch.Tensor, data_range: float) -> torch.Tensor:
    """uint8 [t,H,W,C] pair -> float64 [t]."""
    t, h, w, c = reference.shape
    x = reference.permute(0, 3, 1, 2).reshape(t * c, 1, h, w).double()
    y = test.permute(0, 3, 1, 2).reshape(t * c, 1, h, w).double()
    ux, uy, uxx, uyy, uxy = _box_mean(torch.cat([x, y, x * x, y * y, x * y], dim=1)).unbind(dim=1)
    cov_norm = WIN_SIZE**2 / (WIN_SIZE**2 - 1)
    vx, vy, vxy = cov_norm * (uxx - ux * ux), cov_norm * (uyy - uy * uy), cov_norm * (uxy - ux * uy)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2)).view(t, c).mean(dim=1)


def ssim_per_frame(reference: torch.Tensor, test: torch.Tensor, data_range: float = PEAK) -> torch.Tensor:
    """uint8 frames [T,H,W,C] -> float64 [T]: skimage's mean SSIM per frame (within 1e-6)."""
    check_frame_pair(reference, test)
    t, h, w, c = reference.shape
    if h < WIN_SIZE or w < WIN_SIZE:
        raise ValueError(f"SSIM needs frames of at least {WIN_SIZE}x{WIN_SIZE} pixels, got {h}x{w}")
    step = max(1, CHUNK_PIXELS // (h * w * c))
    out = [_ssim_chunk(reference[i : i + step], test[i : i + step], data_range) for i in range(0, t, step)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64, device=reference.device)
