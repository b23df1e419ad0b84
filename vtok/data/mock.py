"""Synthetic clips for debug runs (`mock_video{res}`, NVIDIA's mock data), deterministic per (seed, epoch, index).

NVIDIA's mock clips are uniform noise, `2 * rand(3, T, h, w) - 1`, at the 16:9 crop size (256x144 for
crop_height 256; the validation table's 16:9 entry when crop_height is None), 32768 per epoch. vtok gives
the same by default, and `mock_content="shapes"`: rectangles and discs moving over a drifting colour
gradient, which a tokenizer can learn, so a debug run's loss and reconstructions mean something.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from .config import DatasetConfig
from .sources import crop_size, parse_dataset_name
from .video_dataset import SPLITS, parse_key, sample_rng

MOCK_ASPECT = "16,9"
MOCK_FPS = 24.0


def _bounce(position: np.ndarray, low: float, high: float) -> np.ndarray:
    """Positions folded back into [low, high], as a ball bouncing off the borders."""
    span = max(high - low, 1e-6)
    folded = np.mod(position - low, 2 * span)
    return low + np.where(folded > span, 2 * span - folded, folded)


def moving_shapes(
    num_frames: int, height: int, width: int, rng: np.random.Generator, num_shapes: int = 3
) -> np.ndarray:
    """uint8 `[T, H, W, 3]`: a slowly drifting gradient with rectangles and discs moving at constant speed."""
    t = np.arange(num_frames, dtype=np.float32)[:, None, None]
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    colours = rng.uniform(40, 215, size=(2, 3)).astype(np.float32)
    drift = rng.uniform(-0.02, 0.02)
    weight = np.clip((xx / max(width - 1, 1) + yy / max(height - 1, 1)) / 2 + drift * t, 0, 1)[..., None]
    frames = colours[0] * (1 - weight) + colours[1] * weight
    for _ in range(num_shapes):
        size = rng.uniform(0.1, 0.3) * min(height, width)
        cx = _bounce(rng.uniform(0, width) + rng.uniform(-2, 2) * t, size / 2, width - size / 2)
        cy = _bounce(rng.uniform(0, height) + rng.uniform(-2, 2) * t, size / 2, height - size / 2)
        if rng.random() < 0.5:
            mask = (np.abs(xx - cx) <= size / 2) & (np.abs(yy - cy) <= size / 2)
        else:
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= (size / 2) ** 2
        frames[mask] = rng.uniform(0, 255, size=3)
    return np.rint(frames).clip(0, 255).astype(np.uint8)


class MockVideoDataset(Dataset):
    """`mock_length` synthetic clips `[3, T, H, W]` in [-1, 1]; the same index always gives the same clip."""

    def __init__(self, cfg: DatasetConfig, split: str = "train", seed: int = 0) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        cfg.validate()
        self.cfg = cfg
        self.split = split
        self.seed = cfg.seed if cfg.seed is not None else seed
        self.epoch = 0
        self.width, self.height = crop_size(cfg, parse_dataset_name(cfg.name).resolution, MOCK_ASPECT)

    def __len__(self) -> int:
        return self.cfg.mock_length

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        epoch, index = parse_key(key, self.epoch)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} mock clips")
        rng = sample_rng(self.seed, epoch, index, SPLITS.index(self.split))
        frames, height, width = self.cfg.num_video_frames, self.height, self.width
        if self.cfg.mock_content == "shapes":
            clip = torch.from_numpy(moving_shapes(frames, height, width, rng)).permute(3, 0, 1, 2)
            video = clip.float().div_(255).sub_(0.5).div_(0.5).contiguous()
        else:
            generator = torch.Generator().manual_seed(int(rng.integers(2**63)))
            video = 2 * torch.rand(3, frames, height, width, generator=generator) - 1
        return {
            "video": video,
            "video_name": {"path": f"mock/{self.split}/{index}", "start": 0},
            "fps": MOCK_FPS,
            "aspect_ratio": MOCK_ASPECT,
            "image_size": torch.tensor([height, width, height, width], dtype=torch.float32),
            "padding_mask": torch.zeros(1, 1, height, width),
        }
