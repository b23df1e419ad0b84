"""Validation metrics (docs/design.md#metrics) on held-out batches, summed on every rank and averaged over all.

PSNR is NVIDIA's: both clips quantized to uint8, MSE per frame over (H, W, C), `10 log10(255^2/(mse+eps))`
averaged over frames. SSIM equals skimage's per frame. LPIPS-VGG per frame, when its local weights are there, on
the same uint8 frames as `vtok evaluate`. For discrete models, code usage is the perplexity `exp(H)` of the token
histogram and the fraction of the codebook used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager

import torch
from torch import nn

from ..metrics import frame_mse, psnr_from_mse, ssim_per_frame, to_uint8
from ..metrics.lpips import LPIPS, lpips_per_frame
from .distributed import DistInfo, all_reduce_sum

F64 = {"dtype": torch.float64}


def to_frames_hwc(video: torch.Tensor) -> torch.Tensor:
    """[B,3,T,H,W] in [-1,1] -> uint8 [B*T,H,W,3] on the CPU."""
    return to_uint8(video).permute(0, 2, 3, 4, 1).flatten(0, 1).cpu()


class MetricSums:
    """Running sums of per-frame PSNR, SSIM (and LPIPS), and the token histogram."""

    def __init__(self, codebook_size: int | None, lpips: LPIPS | None = None) -> None:
        self.sums = torch.zeros(4, dtype=torch.float64)  # psnr, ssim, lpips, frames
        self.lpips = lpips
        self.histogram = torch.zeros(codebook_size, dtype=torch.float64) if codebook_size else None

    def add(self, x: torch.Tensor, reconstruction: torch.Tensor, latent: torch.Tensor | None) -> None:
        ref, test = to_frames_hwc(x), to_frames_hwc(reconstruction)
        lpips = lpips_per_frame(self.lpips, ref, test).sum() if self.lpips is not None else torch.zeros((), **F64)
        self.sums += torch.stack(
            [
                psnr_from_mse(frame_mse(ref, test)).sum(),
                ssim_per_frame(ref, test).sum(),
                lpips,
                torch.tensor(float(ref.shape[0]), **F64),
            ]
        )
        if self.histogram is not None and latent is not None:
            self.histogram += torch.bincount(latent.flatten().long().cpu(), minlength=len(self.histogram)).double()

    def reduce(self, info: DistInfo, prefix: str) -> dict[str, float]:
        """{prefix + metric: value} averaged over every rank's frames."""
        sums = all_reduce_sum(self.sums.to(info.device), info).cpu()
        frames = max(float(sums[3]), 1.0)
        out = {f"{prefix}psnr": float(sums[0]) / frames, f"{prefix}ssim": float(sums[1]) / frames}
        if self.lpips is not None:
            out[f"{prefix}lpips"] = float(sums[2]) / frames
        if self.histogram is not None:
            counts = all_reduce_sum(self.histogram.to(info.device), info).cpu()
            p = counts / counts.sum().clamp(min=1)
            entropy = -(p[p > 0] * p[p > 0].log()).sum()
            out[f"{prefix}code_perplexity"] = float(entropy.exp())
            out[f"{prefix}code_usage"] = float((counts > 0).double().mean())
        return out


@torch.no_grad()
def evaluate(
    network: nn.Module,
    batches: Iterable[torch.Tensor],
    autocast: Callable[[], AbstractContextManager],
    cast_input: Callable[[torch.Tensor], torch.Tensor],
    codebook_size: int | None,
    info: DistInfo,
    prefix: str,
    lpips: LPIPS | None = None,
) -> tuple[dict[str, float], tuple[torch.Tensor, torch.Tensor] | None]:
    """Metrics of `network` (in eval mode) on `batches`, and the first clip with its reconstruction; LPIPS too
    when its model is given."""
    was_training = network.training
    network.eval()
    sums, sample = MetricSums(codebook_size, lpips), None
    try:
        for x in batches:
            with autocast():
                out = network(cast_input(x))
            sums.add(x, out.reconstructions, out.latent if codebook_size else None)
            if sample is None:
                sample = (x[:1].cpu(), out.reconstructions[:1].float().cpu())
    finally:
        network.train(was_training)
    return sums.reduce(info, prefix), sample
