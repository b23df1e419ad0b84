"""The training loss terms and their typed settings: NVIDIA's L1 + VGG16 "lpips" recipe and the optional terms.

Below both `config` (which nests these settings under NVIDIA's override keys) and `training` (which runs them).
"""

from .config import (
    LAYER_WEIGHTS,
    ColorConfig,
    FlowConfig,
    KLConfig,
    LossConfig,
    PerceptualConfig,
    VideoConsistencyConfig,
)
from .consistency import VideoConsistencyLoss, check_windows
from .flow import FlowLoss, load_flow_network
from .perceptual import PerceptualLoss, find_vgg16_weights, hub_vgg16_path
from .schedules import WeightSchedule
from .tokenizer_loss import ColorLoss, KLLoss, TokenizerLoss, build_losses, vae_posterior

__all__ = [
    "LAYER_WEIGHTS",
    "ColorConfig",
    "FlowConfig",
    "KLConfig",
    "LossConfig",
    "PerceptualConfig",
    "VideoConsistencyConfig",
    "VideoConsistencyLoss",
    "check_windows",
    "FlowLoss",
    "load_flow_network",
    "ColorLoss",
    "KLLoss",
    "TokenizerLoss",
    "build_losses",
    "vae_posterior",
    "PerceptualLoss",
    "find_vgg16_weights",
    "hub_vgg16_path",
    "WeightSchedule",
]
