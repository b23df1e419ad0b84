"""LPIPS-VGG as a differentiable training term: the same distance and local weights as `vtok evaluate`.

Unlike NVIDIA's "lpips" perceptual term (raw VGG features, no heads), this is standard LPIPS v0.1:
unit-normalized VGG16 taps, learned linear heads, spatial means, summed over taps. Per frame, time folded
into the batch: `weight(it) * mean over the B*T frames of LPIPS(x_t, x_hat_t)`. The reference frames go
through VGG without a graph; only x_hat gets gradients. `chunk_frames=N` runs N frames at a time, each chunk
under activation checkpointing, so activation memory is bounded by one chunk whatever the clip's length
(backward recomputes each chunk's VGG once more). Weights are read from `$VTOK_LPIPS_WEIGHTS` (or a given
folder) by `find_lpips_weights`; nothing is downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..metrics.lpips import LIN_FILE, LPIPS, VGG_FILES, WEIGHTS_ENV, find_lpips_weights

SETTINGS_KEY = "loss.lpips"


def _frames(video: torch.Tensor) -> torch.Tensor:
    """[B,C,T,H,W] -> [B*T,C,H,W] (b-major); [B,C,H,W] is returned as is."""
    if video.ndim == 4:
        return video
    b, c, t, h, w = video.shape
    return video.transpose(1, 2).reshape(b * t, c, h, w)


def _constant_one(iteration: int) -> float:
    return 1.0


class LPIPSLoss(nn.Module):
    """`weight(iteration) * mean LPIPS` over the frames of x, x_hat [B,3,T,H,W] (or [B,3,H,W]) in [-1,1], float32.

    `schedule` maps the iteration to the weight (a `WeightSchedule`; default 1.0 throughout). `dtype` is the
    dtype LPIPS runs in (float32 by default; under autocast its convs run in bf16 anyway).
    """

    def __init__(
        self,
        lpips: LPIPS,
        schedule: Callable[[int], float] | None = None,
        chunk_frames: int = 0,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if chunk_frames < 0:
            raise ValueError(f"{SETTINGS_KEY}.chunk_frames must be 0 (all frames at once) or more, got {chunk_frames}")
        self.lpips = lpips.to(dtype).requires_grad_(False).eval()
        self.schedule = schedule if schedule is not None else _constant_one
        self.chunk_frames = chunk_frames

    def train(self, mode: bool = True) -> LPIPSLoss:
        """LPIPS stays frozen in eval mode whatever the parent's mode."""
        super().train(mode)
        self.lpips.eval()
        return self

    def _chunk_sum(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        dtype = next(self.lpips.parameters()).dtype
        return self.lpips(x.to(dtype), y.to(dtype)).sum(dtype=torch.float32)

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor, iteration: int) -> torch.Tensor:
        if x.shape != x_hat.shape or x.ndim not in (4, 5) or x.shape[1] != 3:
            raise ValueError(
                f"the LPIPS term needs two [B,3,T,H,W] (or [B,3,H,W]) tensors of one shape, got "
                f"{list(x.shape)} and {list(x_hat.shape)}"
            )
        weight = self.schedule(iteration)
        if weight == 0.0:
            return x_hat.new_zeros((), dtype=torch.float32)
        frames_x, frames_y = _frames(x.detach()), _frames(x_hat)
        total = frames_x.shape[0]
        chunk = self.chunk_frames or total
        recompute = bool(self.chunk_frames) and torch.is_grad_enabled() and frames_y.requires_grad
        distance = frames_y.new_zeros((), dtype=torch.float32)
        for start in range(0, total, chunk):
            args = (frames_x[start : start + chunk], frames_y[start : start + chunk])
            part = checkpoint(self._chunk_sum, *args, use_reentrant=False) if recompute else self._chunk_sum(*args)
            distance = distance + part
        return weight * distance / total


def missing_weights_hint() -> str:
    return (
        f"put torchvision's VGG16 ({' or '.join(VGG_FILES)}) and lpips' heads ({LIN_FILE}) in one folder and "
        f"set {SETTINGS_KEY}.weights (or ${WEIGHTS_ENV}) to it, or train without the term: {SETTINGS_KEY}.enabled=false"
    )


def require_lpips_weights(folder: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """(VGG16 file, heads file) in `folder` (default `$VTOK_LPIPS_WEIGHTS`); FileNotFoundError saying what to do
    when neither is set (ValueError from `find_lpips_weights` when the folder lacks a file)."""
    files = find_lpips_weights(Path(folder) if folder else None)
    if files is None:
        raise FileNotFoundError(
            f"the LPIPS training term needs LPIPS-VGG weights, and neither {SETTINGS_KEY}.weights nor ${WEIGHTS_ENV} "
            f"is set: {missing_weights_hint()}"
        )
    return files


def build_lpips_loss(
    folder: str | os.PathLike | None = None,
    schedule: Callable[[int], float] | None = None,
    chunk_frames: int = 0,
    dtype: torch.dtype = torch.float32,
) -> LPIPSLoss:
    """LPIPSLoss from the local weight files in `folder` (default `$VTOK_LPIPS_WEIGHTS`).

    FileNotFoundError when no folder is given or set; ValueError (from `find_lpips_weights` / the loaders)
    naming the folder or file when it lacks a file or holds files of the wrong layout.
    """
    return LPIPSLoss(LPIPS.from_files(*require_lpips_weights(folder)), schedule, chunk_frames, dtype)
