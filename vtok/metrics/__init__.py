"""Per-frame video quality metrics: PSNR (NVIDIA's and TokenBench's), skimage-equal SSIM, LPIPS-VGG."""

from .lpips import LPIPS, ScalingLayer, find_lpips_weights, lpips_per_frame
from .psnr import frame_mse, pooled_psnr, psnr_from_mse, to_uint8
from .ssim import ssim_per_frame

__all__ = [
    "frame_mse",
    "psnr_from_mse",
    "pooled_psnr",
    "to_uint8",
    "ssim_per_frame",
    "LPIPS",
    "ScalingLayer",
    "find_lpips_weights",
    "lpips_per_frame",
]
