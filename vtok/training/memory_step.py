"""One training step and one validation forward of a config, run on fake tensors to measure their memory.

The real modules are built under FakeTensorMode (sizes and dtypes, no data, no memory): the tokenizer with the
config's trainable parts and activation checkpointing, the loss with its VGG16 / flow networks, in the precision
asked for. `LiveBytes` counts what the step allocates. Loss schedules are replaced by constant weights so every
term a run will ever compute is computed here (the worst iteration). The design and its limits are in
docs/design.md#memory-planner.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from ..config.schema import Config
from ..data.config import LoaderConfig
from ..data.sources import ASPECT_RATIOS, crop_size, parse_dataset_name
from ..losses.adversarial import Adversarial, build_adversarial, reconstruction_loss
from ..losses.consistency import VideoConsistencyLoss
from ..losses.flow import FlowLoss, find_flow_network, load_flow_network
from ..losses.lpips_term import LPIPSLoss
from ..losses.perceptual import PerceptualLoss
from ..losses.schedules import WeightSchedule
from ..losses.tokenizer_loss import ColorLoss, KLLoss, TokenizerLoss
from ..metrics.lpips import LPIPS
from ..networks.tokenizer import Tokenizer, tokenizer_from_config
from ..networks.trainable import apply_trainable, last_layer_weight
from ..networks.vgg import VGG16Features
from .memory_tracker import LiveBytes
from .recompute import BLOCKS, recompute_blocks


@dataclass(frozen=True)
class StepKnobs:
    """The settings that change a step's activations (the rest of the plan is arithmetic on parameter counts)."""

    precision: str  # fp32 | bf16_autocast | bf16_pure (resolved)
    activation_checkpointing: bool
    perceptual_chunk_frames: int
    micro_batch: int
    cuda_autocast: bool = True  # follow CUDA's autocast policy (GroupNorm in fp32), not the CPU's


@dataclass(frozen=True)
class ParameterCounts:
    """Elements of the network's parameters: all, trainable, and the bytes of parameters and buffers as built."""

    total: int
    trainable: int
    bytes: int


@dataclass(frozen=True)
class StepMemory:
    """Bytes a step allocates on top of the state that lives through training, and the sizes of that state."""

    step_peak: int  # forward + loss + backward, gradients included as they appear
    step_peak_without_grads: int  # the same without gradients: what a later micro-step adds to full gradients
    validation_peak: int  # a no-grad forward of one validation batch (0: validation off)
    grad_bytes: int  # the gradients of one backward, in the network's dtype
    network: ParameterCounts
    loss_network_bytes: int  # frozen VGG16 / flow weights
    largest_block_bytes: int  # the biggest ResNet/attention block's weights (an FSDP unit)
    unsharded_root_bytes: int  # weights outside the blocks (FSDP keeps them gathered through the step)
    discriminator_parameters: int = 0  # the adversarial stage's discriminator(s), trained with their own AdamW


def largest_crop(loader: LoaderConfig) -> tuple[int, int]:
    """(H, W) of the biggest crop the loader can yield over the aspect buckets: the step's worst case."""
    dataset = loader.dataset
    resolution = parse_dataset_name(dataset.name).resolution
    sizes = [crop_size(dataset, resolution, aspect) for aspect in ASPECT_RATIOS]
    width, height = max(sizes, key=lambda wh: wh[0] * wh[1])
    return height, width


def prepare_network(network: Tokenizer, config: Config) -> None:
    """What the trainer does to the built network that changes which weights train: frozen parts, LoRA adapters."""
    model = config.model.config
    apply_trainable(network, model.trainable, model.lora.settings())


def discriminator_parameters(config: Config) -> int:
    """Elements of the adversarial stage's discriminator(s) (0 when the stage is off), counted on the meta device."""
    settings = config.model.config.loss.config.adversarial.config
    if not settings.enabled:
        return 0
    with torch.device("meta"):
        return sum(p.numel() for p in build_adversarial(settings).parameters())


def _planning_loss(config: Config, knobs: StepKnobs) -> TokenizerLoss:
    """The training loss with every enabled, needed term at a constant weight; VGG16 with fake weights."""
    terms = config.model.config.loss.to_loss_config()
    perceptual = None
    if terms.perceptual.needed:
        p = terms.perceptual
        perceptual = PerceptualLoss(
            VGG16Features(),
            WeightSchedule.constant(1.0),
            p.layer_weights,
            WeightSchedule.constant(1.0) if p.gram_enabled else None,
            p.checkpoint_activations,
            knobs.perceptual_chunk_frames,
            getattr(torch, p.dtype),
        )
    consistency = None
    if terms.video_consistency.enabled:
        c = terms.video_consistency
        consistency = VideoConsistencyLoss(
            WeightSchedule.constant(1.0),
            c.num_frames,
            c.step,
            config.network.temporal_compression,
            c.latent_weight,
        )
    kl = KLLoss(WeightSchedule.constant(1.0)) if config.network.formulation == "VAE" else None
    lpips = None
    if terms.lpips.needed:
        lpips = LPIPSLoss(
            LPIPS(), WeightSchedule.constant(1.0), terms.lpips.chunk_frames, getattr(torch, terms.lpips.dtype)
        )
    return TokenizerLoss(ColorLoss(WeightSchedule.constant(1.0)), perceptual, kl, None, consistency, lpips)


def _planning_flow(config: Config) -> FlowLoss | None:
    """The flow term with the user's TorchScript network, loaded for real (its architecture is only in the file;
    FileNotFoundError when it is missing, as the trainer would raise): it runs on fake inputs like the rest."""
    settings = config.model.config.loss.to_loss_config().flow
    if not settings.needed:
        return None
    return FlowLoss(
        load_flow_network(find_flow_network(settings.network)),
        WeightSchedule.constant(1.0),
        settings.scale,
        getattr(torch, settings.dtype),
        settings.checkpoint_activations,
    )


def _fp32_group_norm(module: nn.Module, args: tuple) -> tuple:
    """CUDA's autocast runs GroupNorm in float32 (the CPU's keeps bf16): cast its input as CUDA would."""
    if torch.is_autocast_enabled("cpu"):
        return tuple(a.float() if isinstance(a, torch.Tensor) else a for a in args)
    return args


@contextmanager
def _autocast(precision: str) -> Iterator[None]:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16_autocast"):
        yield


def _block_bytes(network: nn.Module) -> tuple[int, int]:
    """(largest block's weight bytes, weight bytes outside every block) of the network."""
    blocks = [m for m in network.modules() if isinstance(m, BLOCKS)]
    inside = {id(p) for b in blocks for p in b.parameters()}
    largest = max((sum(p.nbytes for p in b.parameters()) for b in blocks), default=0)
    outside = sum(p.nbytes for p in network.parameters() if id(p) not in inside)
    return largest, outside


def to_fake(module: nn.Module) -> nn.Module:
    """Replace each meta-device parameter and buffer of `module` by a fake CPU tensor of its shape, dtype and
    layout (in place): modules are built and cast on the meta device, where `.to()` works, then run fake."""
    for child in module.modules():
        if isinstance(child, torch.jit.ScriptModule):  # a loaded flow network: real weights, fake inputs
            continue
        for name, param in child._parameters.items():
            if param is not None:
                fake = torch.empty_strided(param.shape, param.stride(), dtype=param.dtype, device="cpu")
                child._parameters[name] = nn.Parameter(fake, requires_grad=param.requires_grad)
        for name, buffer in child._buffers.items():
            if buffer is not None:
                child._buffers[name] = torch.zeros(buffer.shape, dtype=buffer.dtype, device="cpu")
    return module


def build_planning_modules(config: Config, knobs: StepKnobs) -> tuple[Tokenizer, TokenizerLoss, Adversarial | None]:
    """The tokenizer (trainable parts, checkpointing, dtype as the trainer sets them), the loss and the
    adversarial stage's discriminator(s) when it is on, on meta."""
    settings = config.model.config.loss.config.adversarial.config
    with torch.device("meta"):
        network = tokenizer_from_config(config.network, config.model.config.network_name)
        prepare_network(network, config)
        loss = _planning_loss(config, knobs)
        adversarial = build_adversarial(settings) if settings.enabled else None
    loss.flow = _planning_flow(config)
    if knobs.activation_checkpointing:
        recompute_blocks(network)
    if knobs.precision == "bf16_pure":
        network.to(torch.bfloat16)
    if knobs.cuda_autocast and knobs.precision == "bf16_autocast":
        for module in network.modules():
            if isinstance(module, nn.GroupNorm):
                module.register_forward_pre_hook(_fp32_group_norm)
    return network, loss, adversarial


_MEASURED: dict[tuple[str, StepKnobs], StepMemory] = {}  # a result depends only on the config and the knobs
CACHE_SIZE = 64


def measure_step(config: Config, knobs: StepKnobs) -> StepMemory:
    """The memory of one step of `config` with `knobs`, measured on fake tensors (nothing is allocated);
    remembered, so a fit's candidates and a later plan of the same settings are measured once."""
    key = (repr(config), knobs)
    if key not in _MEASURED:
        if len(_MEASURED) >= CACHE_SIZE:
            _MEASURED.pop(next(iter(_MEASURED)))
        _MEASURED[key] = _measure_step(config, knobs)
    return _MEASURED[key]


def _measure_step(config: Config, knobs: StepKnobs) -> StepMemory:
    network, loss, adversarial = build_planning_modules(config, knobs)
    params = [p for p in network.parameters() if p.requires_grad]
    counts = ParameterCounts(
        total=sum(p.numel() for p in network.parameters()),
        trainable=sum(p.numel() for p in params),
        bytes=sum(t.nbytes for t in [*network.parameters(), *network.buffers()]),
    )
    loss_bytes = sum(t.nbytes for t in [*loss.parameters(), *loss.buffers()])
    largest_block, outside = _block_bytes(network)
    with FakeTensorMode(allow_non_fake_inputs=loss.flow is not None), ExitStack() as stack:
        to_fake(network)
        to_fake(loss)
        extra = [] if adversarial is None else [*to_fake(adversarial).parameters(), *adversarial.buffers()]
        params = [p for p in network.parameters() if p.requires_grad]
        tracker = LiveBytes()
        tracker.ignore([*network.parameters(), *network.buffers(), *loss.parameters(), *loss.buffers(), *extra])
        for p in params:
            stack.enter_context(_grad_marking(p, tracker))
        if adversarial is not None:  # its gradients are the plan's state: dropped as they appear
            for p in adversarial.parameters():
                stack.enter_context(_grad_dropping(p))
        with tracker:
            frames = config.dataloader_train.dataset.num_video_frames
            height, width = largest_crop(config.dataloader_train)
            x = torch.rand(knobs.micro_batch, 3, frames, height, width) * 2 - 1
            with _autocast(knobs.precision):
                inputs = loss.network_input(x)
                output = network(inputs.to(torch.bfloat16) if knobs.precision == "bf16_pure" else inputs)
            losses, total = loss(x, output, 0)
            if adversarial is not None:
                total = total + _generator_term(adversarial, network, output.reconstructions, losses, knobs)
            total.backward()
            if adversarial is not None:
                _discriminator_backward(adversarial, inputs, output.reconstructions, knobs)
            del x, inputs, output, total, losses
            grad_bytes = sum(p.grad.nbytes for p in params if p.grad is not None)
            for p in params:
                p.grad = None
        validation = _validation_peak(config, network, knobs) if config.trainer.run_validation else 0
    return StepMemory(
        step_peak=tracker.peak,
        step_peak_without_grads=tracker.peak_without_grads,
        validation_peak=validation,
        grad_bytes=grad_bytes,
        network=counts,
        loss_network_bytes=loss_bytes,
        largest_block_bytes=largest_block,
        unsharded_root_bytes=outside,
        discriminator_parameters=discriminator_parameters(config),
    )


def _discriminator_precision(knobs: StepKnobs) -> torch.autocast:
    """The trainer's discriminator context: bf16 autocast in both bf16 modes, fp32 otherwise."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=knobs.precision != "fp32")


def _generator_term(
    adversarial: Adversarial, network: Tokenizer, fake: torch.Tensor, losses: dict, knobs: StepKnobs
) -> torch.Tensor:
    """The adversarial generator loss as the trainer adds it: the frozen discriminator on the reconstructions,
    with the adaptive weight's two gradients at the decoder's last layer."""
    rec_loss = reconstruction_loss(losses)
    last = last_layer_weight(network) if adversarial.use_adaptive_weight else None
    with _discriminator_precision(knobs):
        return adversarial.generator_term(fake, rec_loss, last)[0]


def _discriminator_backward(adversarial: Adversarial, real: torch.Tensor, fake: torch.Tensor, knobs: StepKnobs) -> None:
    """The discriminator's loss on real and detached reconstructed clips, backpropagated (after the generator's
    backward, with the network's gradients and the reconstructions still alive, as in the trainer)."""
    with _discriminator_precision(knobs):
        d_loss, _ = adversarial.discriminator_step(real, fake.detach())
    d_loss.backward()


@contextmanager
def _grad_dropping(param: torch.Tensor) -> Iterator[None]:
    handle = param.register_post_accumulate_grad_hook(lambda p: setattr(p, "grad", None))
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def _grad_marking(param: torch.Tensor, tracker: LiveBytes) -> Iterator[None]:
    handle = param.register_post_accumulate_grad_hook(lambda p: tracker.mark_grad(p.grad))
    try:
        yield
    finally:
        handle.remove()


def _validation_peak(config: Config, network: Tokenizer, knobs: StepKnobs) -> int:
    """Bytes a no-grad forward of one validation batch allocates (the EMA swap's weight copy is the plan's)."""
    loader = config.dataloader_val
    height, width = largest_crop(loader)
    tracker = LiveBytes()
    tracker.ignore([*network.parameters(), *network.buffers()])
    with tracker, torch.no_grad():
        shape = (loader.batch_size, 3, loader.dataset.num_video_frames, height, width)
        batches = [torch.rand(shape) for _ in range(config.trainer.max_val_iter)]  # all on the device at once
        with _autocast(knobs.precision):
            network(batches[0].to(torch.bfloat16) if knobs.precision == "bf16_pure" else batches[0])
    return tracker.peak
