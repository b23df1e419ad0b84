"""Typed settings of the training losses, under NVIDIA's names so `model.config.loss.config.<term>.config.<field>`
overrides carry over (docs/design.md#losses); parsing overrides into them is the trainer's job.

Defaults are the effective Tokenize1 post-training recipe (NVIDIA's `video_basic`, which every HDVILA
experiment inherits), not the base `VideoLoss` defaults: L1 color at 1.0, the perceptual ("lpips") term at
0.1 from iteration 0, no Gram term, KL at 1e-6 (VAE only), flow and video consistency off (both available).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .schedules import WeightSchedule

VGG_DTYPES = ("bfloat16", "float32")
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
class LossConfig:
    """All loss terms; `reduce` is NVIDIA's reduction mode, of which only MEAN (its default) is supported."""

    color: ColorConfig = field(default_factory=ColorConfig)
    perceptual: PerceptualConfig = field(default_factory=PerceptualConfig)
    kl: KLConfig = field(default_factory=KLConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    video_consistency: VideoConsistencyConfig = field(default_factory=VideoConsistencyConfig)
    reduce: str = "MEAN"

    def validate(self) -> None:
        """ValueError naming the first setting that cannot work."""
        if self.reduce.upper() != "MEAN":
            raise ValueError(
                f"loss.reduce must be MEAN (the reference's default; SUM modes are not supported), got {self.reduce!r}"
            )
        for term in (self.color, self.perceptual, self.kl, self.flow, self.video_consistency):
            term.validate()
