"""Typed settings of a training run, shaped so NVIDIA's override keys keep their meaning (docs/design.md#loop).

The nesting follows NVIDIA's config tree: `trainer.max_iter`, `checkpoint.jit.input_shape`,
`model.config.network.<field>`, `model.config.loss.config.<term>.config.<field>`, `dataloader_train.dataset.*`.
Defaults are NVIDIA's base settings (its `make_config`) and optimizer defaults; the loss
terms are `vtok.losses.config`'s dataclasses, wrapped in NVIDIA's `.config.` levels. The experiments in
`vtok.config.experiments` change the defaults as the reference does. `Config.validate()` raises ValueError
with the full dotted key of the first setting that cannot work.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

import torch

from ..data.config import DatasetConfig, LoaderConfig
from ..data.sources import ASPECT_RATIOS, crop_size, parse_dataset_name
from ..losses.config import (
    AdversarialConfig,
    ColorConfig,
    FlowConfig,
    KLConfig,
    LossConfig,
    LPIPSConfig,
    PerceptualConfig,
    VideoConsistencyConfig,
)
from ..losses.consistency import check_windows
from ..networks.config import NAMED_CONFIGS, TokenizerConfig, canonical_name, get_config
from ..networks.lora import DEFAULT_TARGETS, LoRASettings
from ..networks.tokenizer import tokenizer_from_config
from ..networks.trainable import apply_trainable, last_layer_weight

DEFAULT_NETWORK = "CV8x8x8-720p"


def _fail(key: str, message: str) -> None:
    raise ValueError(f"{key}{'' if message.startswith('=') else ' '}{message}")


@dataclass
class JobConfig:
    """Who the run is: its folder is `{output_root}/{project}/{group}/{name}`."""

    project: str = "posttraining"
    group: str = "debug"
    name: str = "default"  # may hold NVIDIA's `${now:%Y-%m-%d}`: see vtok.config.arguments.resolve_now
    output_root: str | None = None  # None: $OUTPUT_ROOT, else "checkpoints" (NVIDIA's layout)

    def folder(self) -> Path:
        """The job folder: config files, log, TensorBoard events and `checkpoints/`."""
        root = self.output_root or os.environ.get("OUTPUT_ROOT") or "checkpoints"
        return Path(root) / self.project / self.group / self.name

    def validate(self) -> None:
        for key in ("project", "group", "name"):
            value = getattr(self, key)
            if not value.strip():
                _fail(f"job.{key}", "must not be empty (it names the job folder)")
            if "/" in value or "\\" in value or value in (".", ".."):
                _fail(f"job.{key}", f"={value!r}: must be one folder name, without '/'")


@dataclass
class TrainerConfig:
    """The loop: length, validation and logging cadence, precision, distribution."""

    max_iter: int = 10_000_000
    validation_iter: int = 5000
    max_val_iter: int = 1  # validation batches per validation
    run_validation: bool = True
    validate_at_start: bool = True  # also when resuming (NVIDIA validates at start only from iteration 0)
    logging_iter: int = 100
    seed: int = 1234  # offset by the rank
    grad_accum_iter: int = 1
    clip_grad_norm: float | None = 1.0  # None: no clipping
    # auto: bf16_autocast on CUDA and on CPUs with native bf16, else fp32; bf16_pure: NVIDIA's bf16 weights
    precision: Literal["auto", "bf16_autocast", "bf16_pure", "fp32"] = "auto"
    parallelism: Literal["ddp", "fsdp"] = "ddp"  # fsdp: FSDP2 fully_shard, sharding weights and optimizer state
    activation_checkpointing: bool = False
    memory_budget_gb: float = 0.0  # GB per GPU: pick the cheapest memory settings that fit (docs/training.md); 0: off
    # channels_last_3d weights and activations (true), plain (false), or auto: CUDA channels_last_3d, CPU whichever
    # a timed step on this machine finds faster (measured once, cached); not with FSDP
    channels_last: bool | Literal["auto"] = "auto"
    # auto: on a CPU, time each conv shape's equivalent kernels (Conv3d, Conv2d over frames, ...) once per machine
    # (cached) and run the fastest; conv3d: PyTorch's Conv3d everywhere (always on CUDA)
    conv_kernels: Literal["auto", "conv3d"] = "auto"
    compile: bool = False  # torch.compile the network (ignored on CPU)
    collective_timeout_s: int = 1800  # process-group timeout
    max_nonfinite_steps: int = 10  # stop after this many optimizer steps in a row with a non-finite gradient norm
    device: Literal["auto", "cuda", "cpu"] = "auto"  # auto: CUDA with NCCL when available, else CPU with gloo
    tf32: bool = True  # TF32 matmuls and convolutions on CUDA, as NVIDIA
    tensorboard: bool = True
    wandb: bool = False

    def validate(self) -> None:
        for key in ("max_iter", "seed"):
            if getattr(self, key) < 0:
                _fail(f"trainer.{key}", f"must be 0 or more, got {getattr(self, key)}")
        for key in (
            "validation_iter",
            "max_val_iter",
            "logging_iter",
            "grad_accum_iter",
            "collective_timeout_s",
            "max_nonfinite_steps",
        ):
            if getattr(self, key) < 1:
                _fail(f"trainer.{key}", f"must be at least 1, got {getattr(self, key)}")
        if self.memory_budget_gb < 0:
            _fail("trainer.memory_budget_gb", f"must be 0 (off) or a positive size in GB, got {self.memory_budget_gb}")
        if self.clip_grad_norm is not None and self.clip_grad_norm <= 0:
            _fail("trainer.clip_grad_norm", f"must be positive (null: no clipping), got {self.clip_grad_norm}")


@dataclass
class JitConfig:
    """TorchScript exports written beside each checkpoint: `iter_N_{enc,dec,ema}.jit`."""

    enabled: bool = True
    input_shape: tuple[int, ...] | None = None  # [B,C,T,H,W] tracing example; None: the smallest valid one
    dtype: Literal["bfloat16", "float32"] = "bfloat16"  # bfloat16: as NVIDIA ships its jits


@dataclass
class CheckpointConfig:
    """Saving and loading: the job's latest checkpoint wins, then `load_path`, then scratch."""

    save_iter: int = 5000
    load_path: str | None = None  # NVIDIA's model.pt, or any file vtok.load_tokenizer reads
    strict_resume: bool = True  # every network key of the model must be in the loaded file
    load_training_state: bool = False  # also optimizer, scheduler and iteration from load_path
    load_optimizer_hparams: bool = True  # with load_training_state: lr/betas/eps/wd from the file (NVIDIA)
    only_load_scheduler_state: bool = False  # from load_path: scheduler and iteration only
    keep_last: int | None = None  # keep only the newest K iter_N files; None: keep all
    jit: JitConfig = field(default_factory=JitConfig)

    def validate(self) -> None:
        if self.save_iter < 1:
            _fail("checkpoint.save_iter", f"must be at least 1, got {self.save_iter}")
        if self.keep_last is not None and self.keep_last < 1:
            _fail("checkpoint.keep_last", f"must be at least 1 (null: keep all), got {self.keep_last}")
        if self.load_path is not None and not self.load_path.strip():
            _fail("checkpoint.load_path", "is empty: give a path, or null for none")


@dataclass
class OptimizerConfig:
    """AdamW, decoupled weight decay, with the reference's hyper-parameters."""

    lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.01
    fused: bool | None = None  # None: fused (one kernel for all parameters) on CUDA and CPU

    def validate(self) -> None:
        if self.lr <= 0:
            _fail("optimizer.lr", f"must be positive, got {self.lr}")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            _fail("optimizer.betas", f"must both be in [0, 1), got {list(self.betas)}")
        if self.eps <= 0:
            _fail("optimizer.eps", f"must be positive, got {self.eps}")
        if self.weight_decay < 0:
            _fail("optimizer.weight_decay", f"must be 0 or more, got {self.weight_decay}")


@dataclass
class SchedulerConfig:
    """LR factor: `(it+1)/warmup` below `warmup`, then 1 (warmup), or cosine down to `min_lr` (warmup_cosine)."""

    name: Literal["warmup", "warmup_cosine"] = "warmup"
    warmup: int = 5000
    lr_decay_iters: int = 1_000_000  # warmup_cosine: the iteration where the LR reaches min_lr
    min_lr: float = 1e-8  # warmup_cosine only

    def validate(self) -> None:
        if self.warmup < 0:
            _fail("scheduler.warmup", f"must be 0 or more, got {self.warmup}")
        if self.name == "warmup_cosine" and self.lr_decay_iters <= self.warmup:
            _fail("scheduler.lr_decay_iters", f"must exceed scheduler.warmup={self.warmup}, got {self.lr_decay_iters}")
        if self.min_lr < 0:
            _fail("scheduler.min_lr", f"must be 0 or more, got {self.min_lr}")


@dataclass
class EMAConfig:
    """An fp32 EMA of the network, `e <- beta*e + (1-beta)*theta`, updated before any save of the same step."""

    enabled: bool = True
    beta: float = 0.9999
    warmup: bool = False  # beta_n = min(beta, (1 + n) / (10 + n)) over this run's n updates: for short runs

    def validate(self) -> None:
        if not 0.0 < self.beta < 1.0:
            _fail("model.config.ema.beta", f"must be in (0, 1), got {self.beta}")


@dataclass
class ColorTerm:
    config: ColorConfig = field(default_factory=ColorConfig)


@dataclass
class PerceptualTerm:
    config: PerceptualConfig = field(default_factory=PerceptualConfig)


@dataclass
class FlowTerm:
    config: FlowConfig = field(default_factory=FlowConfig)


@dataclass
class KLTerm:
    config: KLConfig = field(default_factory=KLConfig)


@dataclass
class VideoConsistencyTerm:
    config: VideoConsistencyConfig = field(default_factory=VideoConsistencyConfig)


@dataclass
class LPIPSTerm:
    config: LPIPSConfig = field(default_factory=LPIPSConfig)


@dataclass
class AdversarialTerm:
    config: AdversarialConfig = field(default_factory=AdversarialConfig)


@dataclass
class LossTerms:
    """The loss terms under NVIDIA's keys (`<term>.config.<field>`); the settings are vtok.losses'."""

    color: ColorTerm = field(default_factory=ColorTerm)
    perceptual: PerceptualTerm = field(default_factory=PerceptualTerm)
    flow: FlowTerm = field(default_factory=FlowTerm)
    kl: KLTerm = field(default_factory=KLTerm)
    video_consistency: VideoConsistencyTerm = field(default_factory=VideoConsistencyTerm)
    lpips: LPIPSTerm = field(default_factory=LPIPSTerm)
    adversarial: AdversarialTerm = field(default_factory=AdversarialTerm)
    reduce: str = "MEAN"


LOSS_TERMS = ("color", "perceptual", "flow", "kl", "video_consistency", "lpips", "adversarial")


@dataclass
class LossSpec:
    """`model.config.loss`: the terms, and what to do when the perceptual term's VGG16 weights are absent."""

    config: LossTerms = field(default_factory=LossTerms)
    on_missing_vgg_weights: Literal["error", "warn"] = "error"  # warn: train without the term, one warning line

    def to_loss_config(self) -> LossConfig:
        """The settings `vtok.losses.build_losses` takes (a copy)."""
        terms = copy.deepcopy(self.config)
        return LossConfig(**{name: getattr(terms, name).config for name in LOSS_TERMS}, reduce=terms.reduce)

    def validate(self) -> None:
        for name in LOSS_TERMS:
            _prefixed(f"model.config.loss.config.{name}.config", getattr(self.config, name).config.validate, ["loss."])
        _prefixed("model.config.loss.config", self.to_loss_config().validate, ["loss."])


@dataclass
class LoRAConfig:
    """LoRA (LoCon) adapters on the Conv3d layers: only they train; saves merge them into NVIDIA's weights."""

    rank: int = 0  # adapter rank; 0: no adapters
    alpha: float | None = None  # scale of the adapters' output is alpha / rank; null: alpha = rank (scale 1)
    targets: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))  # module prefixes whose convs adapt
    dropout: float = 0.0  # dropout on the adapters' input (a resume is exact only at 0)

    def settings(self) -> LoRASettings:
        """The networks package's settings (ValueError naming `model.config.lora.<key>`)."""
        return LoRASettings(self.rank, self.alpha, self.dropout, tuple(self.targets))


@dataclass
class ModelConfig:
    """The network (a frozen TokenizerConfig; overrides replace it), what of it trains, its EMA and its losses."""

    network_name: str | None = DEFAULT_NETWORK  # the released model the network is; None: a custom one
    network: TokenizerConfig = field(default_factory=lambda: get_config(DEFAULT_NETWORK))
    # what trains: all, decoder (post_quant_conv and decoder: latents and tokens stay fixed), encoder (encoder and
    # quant_conv), or a list of module prefixes; the rest gets no gradients, optimizer state or EMA drift
    trainable: str | list[str] = "all"
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    loss: LossSpec = field(default_factory=LossSpec)

    def validate(self) -> None:
        if self.network_name is not None:
            try:
                name = canonical_name(self.network_name)
            except ValueError as err:
                raise ValueError(f"model.config.network_name: {err} (null for a custom network)") from None
            if NAMED_CONFIGS[name].name != self.network.name:
                _fail(
                    "model.config.network_name",
                    f"={self.network_name!r} is a {NAMED_CONFIGS[name].name} model "
                    f"but model.config.network.name is {self.network.name!r}; set network_name=null for a "
                    "custom network",
                )
        if not self.network.is_video:
            _fail("model.config.network.name", f"={self.network.name!r}: the trainer trains video tokenizers (CV, DV)")
        self.ema.validate()
        self.loss.validate()
        self.validate_trainable()

    def validate_trainable(self) -> None:
        """`trainable`, `lora` and the adversarial adaptive weight against the network's module names, on a
        network built on the meta device (no memory, a fraction of a second; skipped for the defaults)."""
        lora = self.lora.settings()
        adversarial = self.loss.config.adversarial.config
        needs_last_layer = adversarial.enabled and adversarial.adaptive_weight
        if self.trainable == "all" and not lora.enabled and not needs_last_layer:
            return
        with torch.device("meta"):
            network = tokenizer_from_config(self.network, self.network_name)
        apply_trainable(network, self.trainable, lora)
        if needs_last_layer:
            try:
                last_layer_weight(network)
            except ValueError as err:
                raise ValueError(f"loss.adversarial.adaptive_weight: {err}") from None


@dataclass
class ModelSpec:
    config: ModelConfig = field(default_factory=ModelConfig)


def _mock_loader(res: str = "720") -> LoaderConfig:
    """NVIDIA's registered data defaults: batch 1, 25 frames, crop 128, 8 workers."""
    return LoaderConfig(dataset=DatasetConfig(name=f"mock_video{res}", num_video_frames=25, crop_height=128))


@dataclass
class Config:
    """One training run. Build it with `vtok.config.get_experiment` and `apply_overrides`."""

    job: JobConfig = field(default_factory=JobConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    model: ModelSpec = field(default_factory=ModelSpec)
    dataloader_train: LoaderConfig = field(default_factory=_mock_loader)
    dataloader_val: LoaderConfig = field(default_factory=_mock_loader)

    @property
    def network(self) -> TokenizerConfig:
        return self.model.config.network

    def validate(self) -> None:
        """ValueError naming the dotted key of the first setting that cannot work, before any expensive step."""
        self.job.validate()
        self.trainer.validate()
        self.checkpoint.validate()
        self.optimizer.validate()
        self.scheduler.validate()
        self.model.config.validate()
        for key in ("dataloader_train", "dataloader_val"):
            _validate_loader(key, getattr(self, key), self.network)
        _validate_jit_shape(self.checkpoint.jit.input_shape, self.network)
        adversarial = self.model.config.loss.config.adversarial.config
        if adversarial.enabled:
            _check_discriminator_input(adversarial, self.dataloader_train, self.network)
        consistency = self.model.config.loss.config.video_consistency.config
        if consistency.enabled:
            check_windows(
                self.dataloader_train.dataset.num_video_frames,
                consistency.num_frames,
                consistency.step,
                self.network.temporal_compression,
            )


def _validate_loader(key: str, loader: LoaderConfig, network: TokenizerConfig) -> None:
    """The loader's own checks with full keys, then frames and crops against the network's compression."""
    dataset = loader.dataset
    _prefixed(f"{key}.dataset", dataset.validate, [f.name for f in fields(DatasetConfig)] + ["augment."])
    _prefixed(key, loader.validate, [f.name for f in fields(LoaderConfig)])
    try:
        resolution = parse_dataset_name(dataset.name).resolution
    except ValueError as err:
        raise ValueError(f"{key}.dataset.name: {err}") from None
    tc, sc = network.temporal_compression, network.spatial_compression
    frames = dataset.num_video_frames
    if (frames - 1) % tc:
        low = (frames - 1) // tc * tc + 1
        _fail(
            f"{key}.dataset.num_video_frames",
            f"={frames}: must be 1 + a multiple of {tc} (the network's temporal "
            f"compression), e.g. {max(low, 1 + tc)} or {low + tc}",
        )
    for aspect in ASPECT_RATIOS:
        width, height = crop_size(dataset, resolution, aspect)
        if width < sc or height < sc or width % sc or height % sc:
            what = (
                f"crop_width={dataset.crop_width}, crop_height={dataset.crop_height}"
                if dataset.crop_width is not None
                else f"crop_height={dataset.crop_height}"
            )
            _fail(
                f"{key}.dataset.{what}",
                f"gives {width}x{height} (WxH) crops for {aspect.replace(',', ':')} "
                f"clips: both sides must be positive multiples of {sc} (the network's spatial compression)",
            )


def _check_discriminator_input(settings: AdversarialConfig, loader: LoaderConfig, network: TokenizerConfig) -> None:
    """The discriminator needs frames of at least `min_frame_size` pixels: check the training crops."""
    dataset = loader.dataset
    resolution = parse_dataset_name(dataset.name).resolution
    smallest = min(min(crop_size(dataset, resolution, aspect)) for aspect in ASPECT_RATIOS)
    if smallest < settings.min_frame_size:
        _fail(
            "loss.adversarial.discriminator_layers",
            f"={settings.discriminator_layers}: the discriminator needs frames of at least "
            f"{settings.min_frame_size}x{settings.min_frame_size} pixels, but dataloader_train's crops are "
            f"{smallest} pixels on their short side; use fewer layers or larger crops",
        )


def _prefixed(key: str, check, field_names: list[str]) -> None:
    """Run `check`; re-raise its ValueError with `key.` before a message that starts with a field name."""
    try:
        check()
    except ValueError as err:
        message = str(err)
        if message.startswith("loss."):
            raise ValueError(message) from None
        joiner = "." if any(message.startswith(name) for name in field_names) else ": "
        raise ValueError(f"{key}{joiner}{message}") from None


def _validate_jit_shape(shape: tuple[int, ...] | None, network: TokenizerConfig) -> None:
    """A tracing example the network accepts, with more than one latent frame (docs/design.md#jit-files)."""
    if shape is None:
        return
    key = "checkpoint.jit.input_shape"
    if len(shape) != 5 or min(shape) < 1:
        _fail(key, f"={list(shape)}: expected [B, C, T, H, W] with positive sizes")
    _, channels, frames, height, width = shape
    tc, sc = network.temporal_compression, network.spatial_compression
    if channels != network.in_channels:
        _fail(key, f"={list(shape)}: C must be the network's in_channels={network.in_channels}")
    if frames < 1 + tc or (frames - 1) % tc:
        _fail(
            key,
            f"={list(shape)}: T must be 1 + a positive multiple of {tc} (a single latent frame would trace "
            "a decoder without temporal upsampling)",
        )
    if height % sc or width % sc:
        _fail(key, f"={list(shape)}: H and W must be multiples of {sc}")
