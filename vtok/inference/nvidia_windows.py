"""NVIDIA's `video_cli` windowing on tensors: the behaviour `--nvidia_compat` reproduces.

NVIDIA's inference library cuts a video into non-overlapping windows of `temporal_window` (17) frames and
runs each through the model on its own, so the causal model restarts at every window. Before that, each
window is padded: in space with black (0 in uint8, -1 in model space) up to multiples of 16, the odd extra
pixel at the right/bottom; in time by repeating its first and last frames until (frames - 1) % 8 == 0,
half of them in front and the rest at the end. The alignments are 16 and 8 for every model, the 4x ones
included. Outputs are cropped back to the window and concatenated. Here the same on model-space tensors
[B, C, T, H, W] around any encode, decode or autoencode callable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

NVIDIA_TEMPORAL_WINDOW = 17
NVIDIA_TEMPORAL_ALIGN = 8
NVIDIA_SPATIAL_ALIGN = 16
BLACK = -1.0  # uint8 0 in model space

Fn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class NvidiaWindow:
    """Input frames [start, stop) and the padding NVIDIA adds around them (frames, then pixels)."""

    start: int
    stop: int
    front: int
    back: int
    top: int
    bottom: int
    left: int
    right: int

    @property
    def frames(self) -> int:
        return self.stop - self.start

    @property
    def padded_frames(self) -> int:
        return self.front + self.frames + self.back

    def latent_frames(self, time_factor: int) -> int:
        """Latent frames the model makes of the padded window."""
        return 1 + (self.padded_frames - 1) // time_factor


def _split_pad(missing: int) -> tuple[int, int]:
    return missing >> 1, missing - (missing >> 1)


def nvidia_windows(
    num_frames: int,
    height: int,
    width: int,
    temporal_window: int = NVIDIA_TEMPORAL_WINDOW,
    temporal_align: int = NVIDIA_TEMPORAL_ALIGN,
    spatial_align: int = NVIDIA_SPATIAL_ALIGN,
) -> list[NvidiaWindow]:
    """The windows and paddings of a `num_frames` x `height` x `width` video, in order."""
    if num_frames < 1 or temporal_window < 1:
        raise ValueError(
            f"need at least one frame and a window of at least one frame, got {num_frames} frames "
            f"and temporal_window={temporal_window}"
        )
    top, bottom = _split_pad(-height % spatial_align)
    left, right = _split_pad(-width % spatial_align)
    windows = []
    for i in range((num_frames - 1) // temporal_window + 1):
        start, stop = i * temporal_window, min((i + 1) * temporal_window, num_frames)
        front, back = _split_pad(-(stop - start - 1) % temporal_align)
        windows.append(NvidiaWindow(start, stop, front, back, top, bottom, left, right))
    return windows


def pad_window(video: torch.Tensor, window: NvidiaWindow) -> torch.Tensor:
    """Frames [start, stop) of a [B,C,T,H,W] video with NVIDIA's padding: edge frames in time, black in space."""
    x = video[:, :, window.start : window.stop]
    x = torch.cat(
        [x[:, :, :1].expand(-1, -1, window.front, -1, -1), x, x[:, :, -1:].expand(-1, -1, window.back, -1, -1)], dim=2
    )
    return F.pad(x, (window.left, window.right, window.top, window.bottom), value=BLACK)


def crop_window(output: torch.Tensor, window: NvidiaWindow) -> torch.Tensor:
    """The window's own frames and pixels of a model output for its padded input."""
    h, w = output.shape[-2] - window.top - window.bottom, output.shape[-1] - window.left - window.right
    return output[
        :, :, window.front : window.front + window.frames, window.top : window.top + h, window.left : window.left + w
    ]


def nvidia_autoencode(
    video: torch.Tensor, autoencode: Fn, temporal_window: int = NVIDIA_TEMPORAL_WINDOW
) -> torch.Tensor:
    """NVIDIA's windowed reconstruction of a [B,C,T,H,W] video in model space."""
    t, h, w = video.shape[2:]
    return torch.cat(
        [crop_window(autoencode(pad_window(video, win)), win) for win in nvidia_windows(t, h, w, temporal_window)],
        dim=2,
    )


def _time_dim(tokens: torch.Tensor) -> int:
    """Latents [B,C,t,h,w] and indices [B,t,h,w] both have time third from the end."""
    return tokens.ndim - 3


def nvidia_encode(video: torch.Tensor, encode: Fn, temporal_window: int = NVIDIA_TEMPORAL_WINDOW) -> torch.Tensor:
    """The tokens (latents or indices) of every padded window, concatenated along time."""
    t, h, w = video.shape[2:]
    parts = [encode(pad_window(video, win)) for win in nvidia_windows(t, h, w, temporal_window)]
    return torch.cat(parts, dim=_time_dim(parts[0]))


def nvidia_decode(
    tokens: torch.Tensor,
    decode: Fn,
    num_frames: int,
    height: int,
    width: int,
    time_factor: int,
    temporal_window: int = NVIDIA_TEMPORAL_WINDOW,
) -> torch.Tensor:
    """Frames of tokens made by `nvidia_encode` of a `num_frames` x `height` x `width` video."""
    windows = nvidia_windows(num_frames, height, width, temporal_window)
    counts = [win.latent_frames(time_factor) for win in windows]
    dim = _time_dim(tokens)
    if sum(counts) != tokens.shape[dim]:
        raise ValueError(
            f"tokens have {tokens.shape[dim]} latent frames, but NVIDIA's windows of a {num_frames}-frame "
            f"video give {sum(counts)}"
        )
    parts = tokens.split(counts, dim=dim)
    return torch.cat([crop_window(decode(part), win) for part, win in zip(parts, windows)], dim=2)
