"""Spec 5.3's augmentations in torch (no torchvision), planned once per sample and applied frame by frame.

Train: with probability `raw_crop_prob`, when the frame is large enough, a random crop at the source
resolution; otherwise a resize that covers the resolution table's size for the clip's aspect bucket
(aspect preserving, bicubic with antialias, rounded back to uint8 as torchvision does on uint8 tensors),
then a uniform random crop. Then time reversal and a horizontal flip, each with its probability, and
normalization to [-1, 1]. Val: the same resize and a center crop, nothing random. Every random choice comes
from the `numpy.random.Generator` passed in, so a sample depends only on how that generator was seeded.
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np
import torch
import torch.nn.functional as F

from .config import DatasetConfig
from .decode import frame_to_rgb
from .sources import aspect_bucket, crop_size, resize_size


@dataclass(frozen=True)
class CropPlan:
    """Where one sample's pixels come from: an optional resize to `resized` (H, W), then a crop."""

    aspect: str
    resized: tuple[int, int] | None  # None: the source size is kept
    top: int
    left: int
    height: int
    width: int
    reverse: bool
    flip: bool


def cover_size(src_h: int, src_w: int, target_w: int, target_h: int, crop_w: int, crop_h: int) -> tuple[int, int]:
    """(H, W) of the aspect-preserving resize that covers both the table size and the crop (NVIDIA's
    `ResizeSmallestSideAspectPreserving`: scale = max(tw/w, th/h), sizes rounded to nearest)."""
    scale = max(target_w / src_w, target_h / src_h, crop_w / src_w, crop_h / src_h)
    return max(int(scale * src_h + 0.5), crop_h), max(int(scale * src_w + 0.5), crop_w)


def plan_crop(
    src_h: int, src_w: int, cfg: DatasetConfig, resolution: str, is_train: bool, rng: np.random.Generator
) -> CropPlan:
    """Draw one sample's crop, resize, reversal and flip (train), or the deterministic val crop."""
    aspect = aspect_bucket(src_w, src_h)
    crop_w, crop_h = crop_size(cfg, resolution, aspect)
    target_w, target_h = resize_size(resolution, aspect)
    if not is_train:
        height, width = cover_size(src_h, src_w, target_w, target_h, crop_w, crop_h)
        top, left = int(round((height - crop_h) / 2.0)), int(round((width - crop_w) / 2.0))
        resized = None if (height, width) == (src_h, src_w) else (height, width)
        return CropPlan(aspect, resized, top, left, crop_h, crop_w, False, False)
    aug = cfg.augment
    raw = rng.random() < aug.raw_crop_prob and src_w >= crop_w and src_h >= crop_h
    height, width = (src_h, src_w) if raw else cover_size(src_h, src_w, target_w, target_h, crop_w, crop_h)
    top = int(rng.integers(0, height - crop_h + 1))
    left = int(rng.integers(0, width - crop_w + 1))
    reverse = bool(rng.random() < aug.reverse_prob)
    flip = bool(rng.random() < aug.flip_prob) and aug.flip_enabled
    resized = None if (height, width) == (src_h, src_w) else (height, width)
    return CropPlan(aspect, resized, top, left, crop_h, crop_w, reverse, flip)


def resize_frame(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 `[H, W, 3]` resized bicubically with antialias, clamped and rounded back to uint8."""
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float()
    y = F.interpolate(x, size=(height, width), mode="bicubic", antialias=True, align_corners=False)
    return y.clamp_(0, 255).round_().to(torch.uint8)[0].permute(1, 2, 0).contiguous().numpy()


def apply_plan(frame: av.VideoFrame, plan: CropPlan) -> np.ndarray:
    """One decoded frame through the plan's resize and crop (uint8 `[h, w, 3]`); without a resize only the
    cropped region is converted to RGB."""
    region = (plan.top, plan.left, plan.height, plan.width)
    if plan.resized is None:
        crop = frame_to_rgb(frame, region)
    else:
        resized = resize_frame(frame_to_rgb(frame), *plan.resized)
        crop = resized[plan.top : plan.top + plan.height, plan.left : plan.left + plan.width]
    if crop.shape[:2] != (plan.height, plan.width):
        raise ValueError(
            f"a frame of {frame.width}x{frame.height} is smaller than the crop {plan.width}x{plan.height} "
            "(frames of one video changed size?)"
        )
    return np.ascontiguousarray(crop)


def to_clip(frames: list[np.ndarray], plan: CropPlan) -> torch.Tensor:
    """Cropped uint8 frames to float32 `[3, T, H, W]` in [-1, 1], reversed and flipped as planned."""
    video = torch.from_numpy(np.stack(frames)).permute(3, 0, 1, 2)
    if plan.reverse:
        video = video.flip(1)
    if plan.flip:
        video = video.flip(3)
    return video.float().div_(255).sub_(0.5).div_(0.5).contiguous()
