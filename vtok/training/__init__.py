"""Post-training pieces: loss weight schedules, loss settings and the training losses of spec 4.3."""

from .consistency import VideoConsistencyLoss
from .flow import FlowLoss, load_flow_network
from .loss_config import (
    LAYER_WEIGHTS,
    ColorConfig,
    FlowConfig,
    KLConfig,
    LossConfig,
    PerceptualConfig,
    VideoConsistencyConfig,
)
from .losses import ColorLoss, KLLoss, TokenizerLoss, build_losses, vae_posterior
from .perceptual import PerceptualLoss, find_vgg16_weights, hub_vgg16_path
from .schedules import WeightSchedule

__all__ = [
    "LAYER_WEIGHTS",
    "ColorConfig",
    "FlowConfig",
    "KLConfig",
    "LossConfig",
    "PerceptualConfig",
    "VideoConsistencyConfig",
    "VideoConsistencyLoss",
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
