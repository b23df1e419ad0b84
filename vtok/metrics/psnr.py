"""Per-frame MSE and PSNR on uint8 frames, as NVIDIA's training validation and TokenBench compute them.

Both tensors are quantized to uint8 first (`to_uint8`), so the error is on the [0, 255] scale. NVIDIA
averages the per-frame PSNR (capped by `eps` for identical frames); TokenBench takes the PSNR of a
video's mean MSE (`pooled_psnr`), which weighs bad frames more.
"""

from __future__ import annotations

import math

import torch

PEAK = 255.0


def check_frame_pair(reference: torch.Tensor, test: torch.Tensor) -> None:
    """Raise ValueError unless both are uint8 frames [T,H,W,C] of one shape."""
    problems = []
    if reference.shape != test.shape:
        problems.append("shapes differ")
    if reference.dim() != 4 or test.dim() != 4:
        problems.append("expected 4 dims [T,H,W,C]")
    if reference.dtype != torch.uint8 or test.dtype != torch.uint8:
        problems.append(f"expected uint8, got {reference.dtype} and {test.dtype}")
    if problems:
        raise ValueError(f"reference {tuple(reference.shape)} vs test {tuple(test.shape)}: {'; '.join(problems)}")


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> uint8 like NVIDIA: clamp((x+1)/2, 0, 1)*255 + 0.5, truncated (round half up)."""
    return (((x.float() + 1) / 2).clamp(0, 1) * 255 + 0.5).to(torch.uint8)


def frame_mse(reference: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
    """uint8 frames [T,H,W,C] -> float64 [T]: mean squared error over (H,W,C) per frame, exact."""
    check_frame_pair(reference, test)
    diff = reference.double() - test.double()
    return diff.square().flatten(1).mean(dim=1)


def psnr_from_mse(mse: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per-frame PSNR in dB, float64: 10*log10(255^2/(mse+eps)); eps keeps identical frames finite."""
    return 10 * torch.log10(PEAK**2 / (mse.double() + eps))


def pooled_psnr(mse_per_frame: torch.Tensor) -> float:
    """TokenBench's video PSNR: 10*log10(255^2/mean MSE over all frames); inf when the mean is 0."""
    if mse_per_frame.numel() == 0:
        raise ValueError("pooled_psnr needs at least one frame")
    mean = mse_per_frame.double().mean().item()
    return math.inf if mean == 0 else 10 * math.log10(PEAK**2 / mean)
