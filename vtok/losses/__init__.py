"""The training loss terms and their typed settings: NVIDIA's L1 + VGG16 "lpips" recipe, the optional terms, and
the post-training extras (standard LPIPS, the adversarial stage).

Below both `config` (which nests these settings under NVIDIA's override keys) and `training` (which runs them).
"""

from .adversarial import Adversarial, build_adversarial
from .config import (
    LAYER_WEIGHTS,
    AdversarialConfig,
    ColorConfig,
    FlowConfig,
    KLConfig,
    LossConfig,
    LPIPSConfig,
    PerceptualConfig,
    VideoConsistencyConfig,
)
from .consistency import VideoConsistencyLoss, check_windows
from .flow import FlowLoss, load_flow_network
from .lpips_term import LPIPSLoss, build_lpips_loss
from .perceptual import PerceptualLoss, find_vgg16_weights, hub_vgg16_path
from .schedules import WeightSchedule
from .tokenizer_loss import ColorLoss, KLLoss, TokenizerLoss, build_losses, vae_posterior

__all__ = [
    "Adversarial",
    "AdversarialConfig",
    "build_adversarial",
    "LPIPSConfig",
    "LPIPSLoss",
    "build_lpips_loss",
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
