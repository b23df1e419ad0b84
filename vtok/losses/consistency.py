"""The video-consistency loss: overlapping windows of a clip must reconstruct their shared frames alike.

A clip [B,C,T,H,W] is unfolded into windows of `num_frames` frames every `step` frames before the forward
pass ([B*W,C,num_frames,H,W], as NVIDIA's model does). The term is the L1 between the frames two neighbouring
windows share in their reconstructions, plus (continuous models) the L1 between the latent frames they share,
times `latent_weight`. Latent frame k >= 1 of a causal window covers its frames 1+(k-1)tc .. k*tc, so with
`step` a multiple of tc the next window's latent k matches this window's latent k + step/tc; latent frame 0
(one frame alone) has no partner and is left out, as are all latent frames when windows share fewer than tc+1
frames.
"""

from __future__ import annotations

import torch
from torch import nn

from .schedules import WeightSchedule


def window_count(frames: int, num_frames: int, step: int) -> int:
    """How many windows of `num_frames` every `step` frames fit in a clip (the tail that does not fit is unused)."""
    return 0 if frames < num_frames else 1 + (frames - num_frames) // step


def check_windows(frames: int, num_frames: int, step: int, temporal_compression: int) -> None:
    """ValueError naming the setting when the windows cannot overlap on the latent grid."""
    key = "loss.video_consistency"
    if (num_frames - 1) % temporal_compression:
        raise ValueError(
            f"{key}.num_frames={num_frames}: must be 1 + a multiple of {temporal_compression} "
            f"(the network's temporal compression)"
        )
    if step < 1 or step % temporal_compression or step >= num_frames:
        raise ValueError(
            f"{key}.step={step}: must be a positive multiple of {temporal_compression} below "
            f"num_frames={num_frames}, so neighbouring windows share frames on the latent grid"
        )
    if window_count(frames, num_frames, step) < 2:
        raise ValueError(
            f"{key}: clips of {frames} frames hold fewer than two windows of num_frames={num_frames} "
            f"every step={step}; lower num_frames or step, or train on longer clips"
        )


class VideoConsistencyLoss(nn.Module):
    """weight(it) * (L1 of shared reconstructed frames + latent_weight * L1 of shared latent frames)."""

    def __init__(
        self,
        schedule: WeightSchedule,
        num_frames: int,
        step: int,
        temporal_compression: int,
        latent_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.schedule = schedule
        self.num_frames, self.step = num_frames, step
        self.temporal_compression = temporal_compression
        self.latent_weight = latent_weight

    def unfold(self, x: torch.Tensor) -> torch.Tensor:
        """[B,C,T,H,W] -> [B*W,C,num_frames,H,W], the windows of each clip next to each other."""
        b, c, t, h, w = x.shape
        check_windows(t, self.num_frames, self.step, self.temporal_compression)
        windows = x.unfold(2, self.num_frames, self.step)  # [B,C,W,H,W',F]
        return windows.permute(0, 2, 1, 5, 3, 4).reshape(-1, c, self.num_frames, h, w)

    def forward(
        self, reconstructions: torch.Tensor, latent: torch.Tensor | None, clips: int, iteration: int
    ) -> torch.Tensor:
        """`reconstructions` [B*W,C,F,H,W] and the float `latent` [B*W,c,f,h,w] (None: discrete) of `clips` clips."""
        shift = self.step
        windows = reconstructions.unflatten(0, (clips, -1))
        loss = (windows[:, :-1, :, shift:] - windows[:, 1:, :, :-shift]).abs().mean(dtype=torch.float32)
        lat_shift = shift // self.temporal_compression
        if latent is not None and latent.is_floating_point() and self.latent_weight and latent.shape[2] > 1 + lat_shift:
            z = latent.unflatten(0, (clips, -1))
            tail = z.shape[3] - lat_shift
            shared = (z[:, :-1, :, 1 + lat_shift :] - z[:, 1:, :, 1:tail]).abs().mean(dtype=torch.float32)
            loss = loss + self.latent_weight * shared
        return self.schedule(iteration) * loss
