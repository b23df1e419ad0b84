"""Generated videos with real motion and texture, written as mp4 files: the demo's data, made without a download.

Each video is a camera pan across a multi-scale noise texture (smooth colour fields plus fine detail) with a
few textured discs and squares moving over it at their own speeds, so a tokenizer must learn both texture and
motion. Deterministic per (seed, index).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..io.video import write_video
from .mock import _bounce


def noise_texture(
    height: int, width: int, rng: np.random.Generator, scales: tuple[int, ...] = (4, 16, 48), detail: float = 0.35
) -> np.ndarray:
    """float32 [H, W, 3] in [0, 1]: random colour fields at several scales, upsampled smoothly and summed."""
    out = torch.zeros(1, 3, height, width)
    for i, cells in enumerate(scales):
        grid = torch.from_numpy(rng.standard_normal((1, 3, cells, max(1, cells * width // height))).astype(np.float32))
        layer = F.interpolate(grid, size=(height, width), mode="bicubic", align_corners=False)
        out += layer * (detail if i == len(scales) - 1 else 1.0) / (i + 1)
    out = out[0].permute(1, 2, 0).numpy()
    low, high = np.percentile(out, 1), np.percentile(out, 99)
    return np.clip((out - low) / max(high - low, 1e-6), 0, 1)


def textured_video(
    num_frames: int, height: int, width: int, rng: np.random.Generator, num_sprites: int = 3, max_pan: float = 2.0
) -> np.ndarray:
    """uint8 [T, H, W, 3]: a panning textured background with textured sprites moving over it."""
    vy, vx = rng.uniform(-max_pan, max_pan, size=2)
    margin_y, margin_x = int(abs(vy) * num_frames) + 1, int(abs(vx) * num_frames) + 1
    background = noise_texture(height + margin_y, width + margin_x, rng)
    y0 = 0 if vy >= 0 else margin_y - 1
    x0 = 0 if vx >= 0 else margin_x - 1
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    sprites = []
    for _ in range(num_sprites):
        size = rng.uniform(0.15, 0.35) * min(height, width)
        start = rng.uniform([0, 0], [height, width])
        speed = rng.uniform(-2.5, 2.5, size=2)
        texture = noise_texture(height, width, rng, scales=(2, 8), detail=1.0)
        sprites.append((size, start, speed, texture, rng.random() < 0.5))
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        # clamped: rounding a pan that moves up or left can land one pixel before the margin's first row
        oy = min(max(int(round(y0 + vy * t)), 0), margin_y - 1)
        ox = min(max(int(round(x0 + vx * t)), 0), margin_x - 1)
        frame = background[oy : oy + height, ox : ox + width].copy()
        for size, start, speed, texture, square in sprites:
            cy = float(_bounce(np.float32(start[0] + speed[0] * t), size / 2, height - size / 2))
            cx = float(_bounce(np.float32(start[1] + speed[1] * t), size / 2, width - size / 2))
            if square:
                mask = (np.abs(yy - cy) <= size / 2) & (np.abs(xx - cx) <= size / 2)
            else:
                mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= (size / 2) ** 2
            frame[mask] = texture[mask]
        frames[t] = np.rint(frame * 255).astype(np.uint8)
    return frames


def write_textured_videos(
    folder: str | Path,
    count: int,
    num_frames: int,
    height: int,
    width: int,
    fps: float = 24.0,
    seed: int = 0,
    prefix: str = "clip",
) -> list[Path]:
    """Write `count` generated videos as `folder/{prefix}_{i:03d}.mp4` (atomically); returns their paths."""
    paths = []
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        path = Path(folder) / f"{prefix}_{index:03d}.mp4"
        paths.append(write_video(path, textured_video(num_frames, height, width, rng), fps))
    return paths
