"""Stream a video through one or more tokenizers and score every reconstructed frame against the input.

PSNR is reported both ways published numbers use: the mean of per-frame PSNRs (NVIDIA's training
validation, docs/design.md#metrics) and the PSNR of the MSE pooled over all frames and pixels of the video (TokenBench).
SSIM is per frame with data_range 255, meaned per video; LPIPS likewise when its weights are given.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..inference.pipeline import Pipeline
from ..io import VideoWriter, iter_frames, probe_video
from ..metrics import LPIPS, frame_mse, lpips_per_frame, pooled_psnr, psnr_from_mse, ssim_per_frame

BATCH_FRAMES = 8


@dataclass
class VideoScores:
    """Per-frame scores of one model on one video."""

    mse: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    lpips: list[float] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return len(self.mse)

    @property
    def psnr_per_frame(self) -> list[float]:
        return psnr_from_mse(torch.tensor(self.mse, dtype=torch.float64)).tolist()

    def summary(self) -> dict[str, float | int | None]:
        """Per-video numbers: frame-mean PSNR, pooled-MSE PSNR, mean SSIM, mean LPIPS (None without weights)."""
        return {
            "frames": self.frames,
            "psnr": float(np.mean(self.psnr_per_frame)),
            "psnr_pooled": pooled_psnr(torch.tensor(self.mse, dtype=torch.float64)),
            "ssim": float(np.mean(self.ssim)),
            "lpips": float(np.mean(self.lpips)) if self.lpips else None,
        }


@dataclass
class ModelScores:
    """One model's scores on every video, by video path."""

    label: str
    checkpoint: str
    model: str
    videos: dict[str, VideoScores] = field(default_factory=dict)


def _batches(streams: Iterable[tuple[np.ndarray, ...]]) -> Iterator[list[tuple[np.ndarray, ...]]]:
    iterator = iter(streams)
    while batch := list(itertools.islice(iterator, BATCH_FRAMES)):
        yield batch


def evaluate_video(
    source: Path,
    pipelines: Mapping[str, Pipeline],
    *,
    lpips: LPIPS | None = None,
    side_by_side: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, VideoScores]:
    """Scores of each pipeline's reconstruction of `source`, computed while streaming (memory bounded by the
    windows); optionally writes an mp4 with input | reconstruction(s) side by side."""
    first = next(iter(pipelines.values()))
    reference = first.prepare(iter_frames(source))
    outputs = [p.autoencode(iter_frames(source)) for p in pipelines.values()]
    scores = {label: VideoScores() for label in pipelines}
    writer = VideoWriter(side_by_side, probe_video(source).fps) if side_by_side else None
    try:
        for batch in _batches(zip(reference, *outputs)):
            ref = torch.from_numpy(np.stack([b[0] for b in batch]))
            for k, label in enumerate(pipelines):
                rec = torch.from_numpy(np.stack([b[k + 1] for b in batch]))
                scores[label].mse += frame_mse(ref, rec).tolist()
                scores[label].ssim += ssim_per_frame(ref, rec).tolist()
                if lpips is not None:
                    scores[label].lpips += lpips_per_frame(lpips, ref, rec).tolist()
            if writer is not None:
                writer.write(np.stack([np.concatenate(b, axis=1) for b in batch]))
            if progress is not None:
                progress(len(batch))
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is not None:
        writer.close()
    return scores
