"""The training loss (docs/design.md#losses): L1 color + NVIDIA's VGG16 "lpips" term (+ optional Gram) + KL for VAEs,
with the optional flow, video-consistency and standard LPIPS-VGG (`lpips_vgg`) terms.

`TokenizerLoss(x, output, iteration, loss_mask)` returns `({term: weighted scalar}, total)`, total being the
sum of the terms, each counted once (NVIDIA adds its last term twice). Each term is a float32
scalar equal to NVIDIA's MEAN reduction of its per-pixel tensor. A `loss_mask` broadcastable to the input
([B,1,T,H,W] typically) weights the pixel terms, which NVIDIA's code silently replaces with ones: masked
pixels add nothing, and the mean still divides by every pixel, so an all-ones mask changes nothing.

`build_losses(config)` builds it from a `LossConfig`. Without VGG16 weights the perceptual term is left out
with one logged warning (`on_missing_weights="warn"`, for smoke runs) or the build fails naming where the file
was looked for (`"error"`). Flow and video consistency are off in the reference; when enabled, the clip is
unfolded into overlapping windows before the forward pass (`TokenizerLoss.network_input`), and the flow term
needs a TorchScript flow network file (losses/flow.py). The LPIPS term needs local LPIPS-VGG weights (an error
naming the setting when they are absent: it is asked for explicitly, never on by default).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch
from torch import nn

from ..checkpoint.auxiliary import load_vgg16_features
from ..networks.tokenizer import TokenizerOutput
from .config import LossConfig
from .consistency import VideoConsistencyLoss
from .flow import FlowLoss, find_flow_network, load_flow_network
from .lpips_term import LPIPSLoss, build_lpips_loss
from .perceptual import PerceptualLoss, find_vgg16_weights, missing_weights_hint
from .schedules import WeightSchedule

log = logging.getLogger(__name__)


class ColorLoss(nn.Module):
    """weight(it) * mean over all pixels and frames of mask * |x - x_hat|, as a float32 scalar."""

    def __init__(self, schedule: WeightSchedule | None = None) -> None:
        super().__init__()
        self.schedule = schedule or WeightSchedule.constant(1.0)

    def forward(
        self, x: torch.Tensor, x_hat: torch.Tensor, iteration: int, loss_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if x.shape != x_hat.shape:
            raise ValueError(f"color loss: input {list(x.shape)} and reconstruction {list(x_hat.shape)} differ")
        diff = (x.detach() - x_hat).abs()
        if loss_mask is not None:
            diff = diff * torch.broadcast_to(loss_mask, diff.shape).to(diff.dtype)
        return self.schedule(iteration) * diff.mean(dtype=torch.float32)


class KLLoss(nn.Module):
    """weight(it) * mean of 0.5 * (mu^2 + sigma^2 - 1 - log sigma^2) over a VAE posterior's elements."""

    def __init__(self, schedule: WeightSchedule | None = None) -> None:
        super().__init__()
        self.schedule = schedule or WeightSchedule.constant(1e-6)

    def forward(self, mean: torch.Tensor, logvar: torch.Tensor, iteration: int) -> torch.Tensor:
        mean, logvar = mean.float(), logvar.float()
        kl = 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar)
        return self.schedule(iteration) * kl.mean()


def vae_posterior(aux: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(mean, logvar) of a VAE's `TokenizerOutput.aux`; None for AE (scalar placeholders) and FSQ (a zero loss)."""
    if isinstance(aux, (tuple, list)) and len(aux) == 2 and all(isinstance(a, torch.Tensor) for a in aux):
        mean, logvar = aux
        return (mean, logvar) if mean.ndim > 1 else None
    return None


class TokenizerLoss(nn.Module):
    """The enabled terms; `forward` -> ({"color", "lpips", "gram", "flow", "kl", "video_consistency", "lpips_vgg":
    scalar}, total). "lpips" is NVIDIA's name of its VGG feature term; "lpips_vgg" is standard LPIPS."""

    def __init__(
        self,
        color: ColorLoss | None = None,
        perceptual: PerceptualLoss | None = None,
        kl: KLLoss | None = None,
        flow: FlowLoss | None = None,
        consistency: VideoConsistencyLoss | None = None,
        lpips: LPIPSLoss | None = None,
    ) -> None:
        super().__init__()
        self.color = color if color is not None else ColorLoss()
        self.perceptual = perceptual
        self.flow = flow
        self.kl = kl
        self.consistency = consistency
        self.lpips = lpips

    @property
    def terms(self) -> list[str]:
        """Names of the terms this loss computes (KL only applies to VAE outputs)."""
        return ["color"] + [
            name
            for name, module in (
                ("lpips", self.perceptual),
                ("flow", self.flow),
                ("kl", self.kl),
                ("video_consistency", self.consistency),
                ("lpips_vgg", self.lpips),
            )
            if module is not None
        ]

    def network_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the network sees: the clip, or its overlapping windows when the consistency term is on."""
        return self.consistency.unfold(x) if self.consistency is not None else x

    def forward(
        self,
        x: torch.Tensor,
        output: TokenizerOutput | torch.Tensor,
        iteration: int,
        loss_mask: torch.Tensor | None = None,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """`x` is the clip before `network_input`; `output` the network's TokenizerOutput, or just the
        reconstruction (then no KL or latent consistency term)."""
        x_hat = output.reconstructions if isinstance(output, TokenizerOutput) else output
        clips = x.shape[0]
        if loss_mask is not None and self.consistency is not None:
            loss_mask = self.consistency.unfold(torch.broadcast_to(loss_mask, x.shape))
        x = self.network_input(x)
        losses = {"color": self.color(x, x_hat, iteration, loss_mask)}
        if self.perceptual is not None:
            losses.update(self.perceptual(x, x_hat, iteration, loss_mask))
        if self.flow is not None:
            losses["flow"] = self.flow(x, x_hat, iteration)
        posterior = vae_posterior(output.aux) if isinstance(output, TokenizerOutput) else None
        if self.kl is not None and posterior is not None:
            losses["kl"] = self.kl(*posterior, iteration)
        if self.consistency is not None:
            latent = output.latent if isinstance(output, TokenizerOutput) else None
            losses["video_consistency"] = self.consistency(x_hat, latent, clips, iteration)
        if self.lpips is not None:
            losses["lpips_vgg"] = self.lpips(x, x_hat, iteration)
        total = torch.stack(list(losses.values())).sum()
        return losses, total


def build_perceptual(config: LossConfig, on_missing_weights: Literal["warn", "error"]) -> PerceptualLoss | None:
    """The perceptual term with its VGG16 weights loaded, or None when it is off or (when allowed) has no weights."""
    settings = config.perceptual
    if not settings.needed:
        return None
    path = find_vgg16_weights(settings.vgg_weights)
    if path is None:
        if on_missing_weights == "error":
            raise FileNotFoundError(
                f"the perceptual loss needs VGG16 weights: {missing_weights_hint()}; or train "
                f"without it: loss.perceptual.enabled=false"
            )
        log.warning("perceptual loss OFF: %s", missing_weights_hint())
        return None
    return PerceptualLoss(
        load_vgg16_features(path),
        settings.lpips_schedule(),
        settings.layer_weights,
        settings.gram_schedule(),
        settings.checkpoint_activations,
        settings.chunk_frames,
        getattr(torch, settings.dtype),
    )


def build_flow(config: LossConfig, device: torch.device | str) -> FlowLoss | None:
    """The flow term with its TorchScript network loaded, or None when it is off (FileNotFoundError: no network)."""
    settings = config.flow
    if not settings.needed:
        return None
    network = load_flow_network(find_flow_network(settings.network), device)
    return FlowLoss(
        network,
        WeightSchedule(settings.boundaries, settings.values),
        settings.scale,
        getattr(torch, settings.dtype),
        settings.checkpoint_activations,
    )


def build_consistency(config: LossConfig, temporal_compression: int) -> VideoConsistencyLoss | None:
    settings = config.video_consistency
    if not settings.enabled:
        return None
    return VideoConsistencyLoss(
        WeightSchedule(settings.boundaries, settings.values),
        settings.num_frames,
        settings.step,
        temporal_compression,
        settings.latent_weight,
    )


def build_lpips(config: LossConfig) -> LPIPSLoss | None:
    """The standard LPIPS term with its local weights, or None when it is off (FileNotFoundError: no weights)."""
    settings = config.lpips
    if not settings.needed:
        return None
    return build_lpips_loss(
        settings.weights,
        WeightSchedule(settings.boundaries, settings.values),
        settings.chunk_frames,
        getattr(torch, settings.dtype),
    )


def build_losses(
    config: LossConfig | None = None,
    on_missing_weights: Literal["warn", "error"] = "warn",
    temporal_compression: int = 8,
    device: torch.device | str = "cpu",
) -> TokenizerLoss:
    """TokenizerLoss from a validated config (ValueError on a setting vtok cannot honour).

    Missing VGG16 weights: "warn" logs one warning line (logger `vtok.losses.tokenizer_loss`) and leaves the
    perceptual term out; "error" raises FileNotFoundError saying where to put the file. An enabled flow term
    without its network file, or LPIPS term without its weights, always raises. `temporal_compression` is the
    network's, for the consistency windows.
    """
    config = config or LossConfig()
    if on_missing_weights not in ("warn", "error"):
        raise ValueError(f"on_missing_weights must be 'warn' or 'error', got {on_missing_weights!r}")
    config.validate()
    return TokenizerLoss(
        ColorLoss(WeightSchedule(config.color.boundaries, config.color.values)),
        build_perceptual(config, on_missing_weights),
        KLLoss(WeightSchedule(config.kl.boundaries, config.kl.values)),
        build_flow(config, device),
        build_consistency(config, temporal_compression),
        build_lpips(config),
    )
