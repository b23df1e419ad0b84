"""Typed settings of the training losses, under NVIDIA's names so `model.config.loss.config.<term>.config.<field>`
overrides carry over (docs/design.md#losses); parsing overrides into them is the trainer's job.

Defaults are the effective Tokenize1 post-training recipe (NVIDIA's `video_basic`, which every HDVILA
experiment inherits), not the base `VideoLoss` defaults: L1 color at 1.0, the perceptual ("lpips") term at
0.1 from iteration 0, no Gram term, KL at 1e-6 (VAE only), flow and video consistency off (both available).
vtok's own terms, off by default: standard LPIPS-VGG (`lpips`) and the adversarial stage (`adversarial`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from .schedules import WeightSchedule

VGG_DTYPES = ("bfloat16", "float32")
DISCRIMINATORS = ("patch2d", "patch3d", "both")
ADVERSARIAL_LOSSES = ("hinge", "non_saturating")
# NVIDIA's per-layer weights of the relu1_2 .. relu5_3 terms.
LAYER_WEIGHTS = (1.0 / 2.6, 1.0 / 4.8, 1.0 / 3.7, 1.0 / 5.6, 10.0 / 1.5)


@dataclass
class ColorConfig:
    """The pixel L1 term."""

    norm: str = "L1"  # NVIDIA's only norm (its code ignores this field)
    boundaries: list[int] = field(default_factory=lambda: [0])
    values: list[float] = field(default_factory=lambda: [1.0])

    def validate(self) -> None:
        """ValueError naming the first setting that cannot work."""
        if self.norm.upper() != "L1":
            raise ValueError(f"loss.color.norm must be L1 (the reference's only norm), got {self.norm!r}")
        WeightSchedule(self.boundaries, self.values)


@dataclass
class PerceptualConfig:
    """NVIDIA's VGG16 feature loss ("lpips", not standard LPIPS) and its optional Gram term."""

    enabled: bool = True  # False: train without it, silently (vtok's switch; NVIDIA has none)
    lpips_boundaries: list[int] = field(default_factory=lambda: [0])
    lpips_values: list[float] = field(default_factory=lambda: [0.1])
    layer_weights: list[float] = field(default_factory=lambda: list(LAYER_WEIGHTS))
    gram_enabled: bool = False
    gram_boundaries: list[int] = field(default_factory=lambda: [500000])
    gram_values: list[float] = field(default_factory=lambda: [0.0, 0.062])
    corr_enabled: bool = False  # NVIDIA's config has it but its loss never computes it
    corr_boundaries: list[int] = field(default_factory=lambda: [0])
    corr_values: list[float] = field(default_factory=lambda: [0.0])
    checkpoint_activations: bool = False  # recompute each VGG slice in backward: less memory, more time
    vgg_weights: str | None = None  # torchvision's vgg16 .pth; None: $VTOK_VGG16_WEIGHTS, then the torch hub cache
    dtype: str = "bfloat16"  # VGG weights and activations; results are accumulated in float32
    chunk_frames: int = 0  # frames per VGG pass, each recomputed in backward (bounds memory); 0: all at once

    def validate(self) -> None:
        """ValueError naming the first setting that cannot work."""
        if len(self.layer_weights) != len(LAYER_WEIGHTS):
            raise ValueError(
                f"loss.perceptual.layer_weights needs {len(LAYER_WEIGHTS)} weights (relu1_2 .. "
                f"relu5_3), got {len(self.layer_weights)}"
            )
        if self.dtype not in VGG_DTYPES:
            raise ValueError(f"loss.perceptual.dtype must be one of {', '.join(VGG_DTYPES)}, got {self.dtype!r}")
        if self.chunk_frames < 0:
            raise ValueError(f"loss.perceptual.chunk_frames must be 0 (all frames) or more, got {self.chunk_frames}")
        if self.corr_enabled:
            raise ValueError(
                "loss.perceptual.corr_enabled=true is not supported: NVIDIA's loss never computes "
                "the correlation term either; set loss.perceptual.corr_enabled=false"
            )
        for name in ("lpips", "gram", "corr"):
            WeightSchedule(getattr(self, f"{name}_boundaries"), getattr(self, f"{name}_values"))

    def lpips_schedule(self) -> WeightSchedule:
        return WeightSchedule(self.lpips_boundaries, self.lpips_values)

    def gram_schedule(self) -> WeightSchedule | None:
        """The Gram weight, or None when the term is off."""
        return WeightSchedule(self.gram_boundaries, self.gram_values) if self.gram_enabled else None

    @property
    def needed(self) -> bool:
        """Whether the term is on and some iteration gives it a nonzero weight (so VGG weights are needed)."""
        gram = self.gram_schedule()
        return self.enabled and not (self.lpips_schedule().always_zero and (gram is None or gram.always_zero))


@dataclass
class KLConfig:
    """The VAE posterior's KL term (skipped for the AE and FSQ formulations, which have no posterior)."""

    boundaries: list[int] = field(default_factory=lambda: [0])
    values: list[float] = field(default_factory=lambda: [1e-6])

    def validate(self) -> None:
        WeightSchedule(self.boundaries, self.values)


@dataclass
class FlowConfig:
    """Optical-flow L1 (off in the reference): needs a TorchScript flow network such as RAFT (see losses/flow.py)."""

    enabled: bool = False
    boundaries: list[int] = field(default_factory=lambda: [1000000])
    values: list[float] = field(default_factory=lambda: [0.0, 0.01])
    scale: int = 2  # frames are downscaled by this before the flow network; the flow is scaled back
    network: str | None = None  # TorchScript flow network file; None: $VTOK_FLOW_NETWORK
    dtype: str = "bfloat16"  # flow network inputs (NVIDIA runs RAFT in bf16); the loss is accumulated in float32
    checkpoint_activations: bool = False  # recompute the flow network in backward: less memory, more time

    def validate(self) -> None:
        if self.scale < 1:
            raise ValueError(f"loss.flow.scale must be at least 1, got {self.scale}")
        if self.dtype not in VGG_DTYPES:
            raise ValueError(f"loss.flow.dtype must be one of {', '.join(VGG_DTYPES)}, got {self.dtype!r}")
        WeightSchedule(self.boundaries, self.values)

    @property
    def needed(self) -> bool:
        return self.enabled and not WeightSchedule(self.boundaries, self.values).always_zero


@dataclass
class VideoConsistencyConfig:
    """L1 between the frames (and latent frames) that overlapping windows of a clip share (off in the reference)."""

    enabled: bool = False
    boundaries: list[int] = field(default_factory=lambda: [0])
    values: list[float] = field(default_factory=lambda: [1.0])
    num_frames: int = 17  # window length: 1 + a multiple of the temporal compression
    step: int = 8  # window stride: a multiple of the temporal compression
    latent_weight: float = 1.0  # weight of the shared latent frames' L1 next to the shared pixels' (continuous)

    def validate(self) -> None:
        if self.num_frames < 2 or self.step < 1:
            raise ValueError(
                f"loss.video_consistency needs num_frames >= 2 and step >= 1, got {self.num_frames} and {self.step}"
            )
        WeightSchedule(self.boundaries, self.values)


@dataclass
class LPIPSConfig:
    """Standard LPIPS-VGG (v0.1, learned heads) per frame, from the same local weights as `vtok evaluate`."""

    enabled: bool = False
    boundaries: list[int] = field(default_factory=lambda: [0])
    values: list[float] = field(default_factory=lambda: [1.0])
    weights: str | None = None  # folder with vgg16.pth and lpips' vgg.pth; None: $VTOK_LPIPS_WEIGHTS
    dtype: str = "float32"  # LPIPS weights and activations; the distance is accumulated in float32
    chunk_frames: int = 0  # frames per LPIPS pass, each recomputed in backward (bounds memory); 0: all at once

    def validate(self) -> None:
        if self.dtype not in VGG_DTYPES:
            raise ValueError(f"loss.lpips.dtype must be one of {', '.join(VGG_DTYPES)}, got {self.dtype!r}")
        if self.chunk_frames < 0:
            raise ValueError(f"loss.lpips.chunk_frames must be 0 (all frames) or more, got {self.chunk_frames}")
        WeightSchedule(self.boundaries, self.values)

    @property
    def needed(self) -> bool:
        """Whether the term is on and some iteration gives it a nonzero weight (so LPIPS weights are needed)."""
        return self.enabled and not WeightSchedule(self.boundaries, self.values).always_zero


@dataclass
class AdversarialConfig:
    """The adversarial stage: a PatchGAN discriminator with its own AdamW and LR warmup, and a generator term."""

    enabled: bool = False
    weight: float = 0.2  # generator term's weight (times the adaptive factor when adaptive_weight)
    start_iter: int = 0  # first iteration (absolute, as the loss schedules) with D steps and the generator term
    discriminator: Literal["patch2d", "patch3d", "both"] = "patch2d"  # patch2d (per frame), patch3d (per clip) or both
    discriminator_channels: int = 64  # width of the discriminator's first conv (doubled per layer, up to 8x)
    discriminator_layers: int = 3  # stride-2 convs of the discriminator; frames need >= 3 * 2**layers pixels
    spectral_norm: bool = False  # spectrally normalized discriminator convs (no norm layers)
    loss: Literal["hinge", "non_saturating"] = "hinge"  # hinge, or non_saturating (binary cross-entropy)
    lecam_weight: float = 0.0  # weight of the LeCam regularization of the discriminator (0: off)
    lecam_decay: float = 0.999  # decay of LeCam's moving averages of the real and fake logits
    adaptive_weight: bool = True  # scale the weight by |grad rec| / |grad adv| at the decoder's last layer
    max_adaptive_weight: float = 1e4  # clamp of that ratio
    lr: float = 1e-4  # discriminator AdamW learning rate after warmup
    betas: tuple[float, float] = (0.5, 0.9)  # discriminator AdamW (beta1, beta2)
    weight_decay: float = 0.0  # discriminator AdamW decoupled weight decay
    warmup: int = 0  # discriminator steps of linear LR warmup (counted from start_iter)

    def validate(self) -> None:
        if self.discriminator not in DISCRIMINATORS:
            raise ValueError(
                f"loss.adversarial.discriminator must be one of {', '.join(DISCRIMINATORS)}, got {self.discriminator!r}"
            )
        if self.loss not in ADVERSARIAL_LOSSES:
            raise ValueError(f"loss.adversarial.loss must be one of {', '.join(ADVERSARIAL_LOSSES)}, got {self.loss!r}")
        for key in ("weight", "lecam_weight", "max_adaptive_weight", "weight_decay"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"loss.adversarial.{key} must be a finite number >= 0, got {value!r}")
        if not 0.0 <= self.lecam_decay < 1.0:
            raise ValueError(f"loss.adversarial.lecam_decay must lie in [0, 1), got {self.lecam_decay!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"loss.adversarial.lr must be positive, got {self.lr!r}")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"loss.adversarial.betas must both be in [0, 1), got {list(self.betas)}")
        for key in ("start_iter", "warmup"):
            if getattr(self, key) < 0:
                raise ValueError(f"loss.adversarial.{key} must be 0 or more, got {getattr(self, key)}")
        if self.discriminator_channels < 1 or self.discriminator_layers < 1:
            raise ValueError(
                "loss.adversarial.discriminator_channels and .discriminator_layers must be at least 1, got "
                f"{self.discriminator_channels} and {self.discriminator_layers}"
            )

    @property
    def min_frame_size(self) -> int:
        """The smallest frame height and width the discriminator takes (one output patch)."""
        return 3 * 2**self.discriminator_layers


@dataclass
class LossConfig:
    """All loss terms; `reduce` is NVIDIA's reduction mode, of which only MEAN (its default) is supported."""

    color: ColorConfig = field(default_factory=ColorConfig)
    perceptual: PerceptualConfig = field(default_factory=PerceptualConfig)
    kl: KLConfig = field(default_factory=KLConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    video_consistency: VideoConsistencyConfig = field(default_factory=VideoConsistencyConfig)
    lpips: LPIPSConfig = field(default_factory=LPIPSConfig)
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)
    reduce: str = "MEAN"

    def validate(self) -> None:
        """ValueError naming the first setting that cannot work."""
        if self.reduce.upper() != "MEAN":
            raise ValueError(
                f"loss.reduce must be MEAN (the reference's default; SUM modes are not supported), got {self.reduce!r}"
            )
        for term in (self.color, self.perceptual, self.kl, self.flow, self.video_consistency, self.lpips):
            term.validate()
        self.adversarial.validate()
