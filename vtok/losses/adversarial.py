"""The adversarial (GAN) terms of post-training: discriminator and generator losses, LeCam, the adaptive weight.

Losses (`loss.adversarial.loss`), on logits averaged over every patch (each patch is one classifier):
- `hinge`: D = 0.5 * (mean relu(1 - D(x)) + mean relu(1 + D(x_hat))), G = -mean D(x_hat);
- `non_saturating`: D = 0.5 * (mean softplus(-D(x)) + mean softplus(D(x_hat))) (binary cross-entropy),
  G = mean softplus(-D(x_hat)).
The 0.5 and the patch-wise means are VQGAN's, kept by VidTok and Open-MAGVIT2 (whose non-saturating variant
averages each sample's logits first). With two discriminators (`both`) each loss is the mean over the two.

LeCam (Tseng et al. 2021, `lecam_weight`): the discriminator loss gets
`lecam_weight * (mean relu(D(x) - ema_fake)^2 + mean relu(ema_real - D(x_hat))^2)`, where ema_real/ema_fake are
exponential moving averages (decay 0.999, from 0, updated with this step's batch before use, as VidTok and
Open-MAGVIT2 do) of the mean logits; they are buffers of `Adversarial`, so they are saved and restored with it.

Adaptive weight (VQGAN's, used by VidTok, Open-MAGVIT2 and Open-Sora): the generator term is
`weight * clamp(||d rec_loss / d W|| / (||d adv_loss / d W|| + 1e-4), 0, 1e4) * adv_loss`, W being the decoder's
last weight (`decoder.conv_out[-1].conv3d.weight` in vtok's networks); the factor is detached. `rec_loss`
should be the reconstruction terms (color, perceptual/LPIPS), not KL. Both gradients come from
`torch.autograd.grad`, which neither accumulates `.grad` nor fires DDP's reducer; the cost is one extra
backward of each loss down to W (through the loss networks and the discriminator, not the decoder).

Distributed use (the trainer's part):
- DDP: each rank has its own batch, so its gradient ratio and logit means differ. Pass `average`, a function
  that all-reduces a tensor to its mean over ranks; the two gradients and the LeCam means are averaged with
  it, so every rank uses the same weight and EMA, equal to one process with the global batch.
- FSDP2: parameters are sharded DTensors that are not in the autograd graph; the root module (which holds
  conv_out) keeps its gathered, plain-tensor weights from its forward until backward. So read `last_layer`
  after the tokenizer's forward (the gathered weight is what the graph used); a DTensor is refused with
  that advice (TypeError). The gradients are then the rank's full local ones, averaged with `average` as
  for DDP. The backward that follows autograd.grad still works under FSDP2 (vtok.training.sharding's layout):
  tests/test_adversarial_distributed.py checks the weight and every gradient against one process, for both.
- The discriminator: run its step through its DDP wrapper (`discriminator_step(..., discriminator=ddp_d)`);
  `generator_term` calls the plain module with its parameters frozen for that forward, so no gradients
  reach it from the generator loss and no DDP hook waits for them. Keep the discriminator replicated (DDP)
  even when the tokenizer is sharded: it is small, and a sharded discriminator inside autograd.grad is untested.
- bf16 autocast: the discriminator runs in bf16, the losses in float32. Keep `Adversarial`'s own buffers in
  float32 (cast only the discriminator when training in pure bf16).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from ..networks.discriminator import VideoDiscriminator, build_discriminator
from .config import AdversarialConfig

SETTINGS_KEY = "loss.adversarial"
LOSSES = ("hinge", "non_saturating")
MAX_ADAPTIVE_WEIGHT = 1e4
GRADIENT_EPS = 1e-4


def _check_loss(loss: str) -> None:
    if loss not in LOSSES:
        raise ValueError(f"{SETTINGS_KEY}.loss must be one of {', '.join(LOSSES)}, got {loss!r}")


def discriminator_loss(loss: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss on logits of real and reconstructed clips, float32."""
    _check_loss(loss)
    real, fake = real_logits.float(), fake_logits.float()
    if loss == "hinge":
        return 0.5 * (F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean())
    return 0.5 * (F.softplus(-real).mean() + F.softplus(fake).mean())


def generator_loss(loss: str, fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator's (tokenizer's) adversarial loss on the logits of its reconstructions, float32."""
    _check_loss(loss)
    fake = fake_logits.float()
    return -fake.mean() if loss == "hinge" else F.softplus(-fake).mean()


def lecam_regularization(
    real_logits: torch.Tensor, fake_logits: torch.Tensor, ema_real: torch.Tensor, ema_fake: torch.Tensor
) -> torch.Tensor:
    """mean relu(real - ema_fake)^2 + mean relu(ema_real - fake)^2, float32 (the EMAs carry no gradient)."""
    real, fake = real_logits.float(), fake_logits.float()
    return F.relu(real - ema_fake.detach()).square().mean() + F.relu(ema_real.detach() - fake).square().mean()


def adversarial_active(iteration: int, start_iter: int) -> bool:
    """Whether the adversarial stage runs at `iteration`: from `start_iter` on (both D steps and the G term)."""
    return iteration >= start_iter


def _refuse_dtensor(last_layer: torch.Tensor) -> None:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # torch built without distributed support
        return
    if isinstance(last_layer, DTensor):
        raise TypeError(
            "the adaptive weight needs the gathered last-layer weight, got an FSDP2-sharded DTensor: "
            "read decoder.conv_out[-1].conv3d.weight after the tokenizer's forward"
        )


def reconstruction_loss(losses: dict[str, torch.Tensor]) -> torch.Tensor:
    """The loss the adaptive weight balances the generator term against: every term but KL, summed."""
    return torch.stack([v for k, v in losses.items() if k != "kl"]).sum()


def adaptive_weight(
    rec_loss: torch.Tensor,
    adv_loss: torch.Tensor,
    last_layer: torch.Tensor,
    max_weight: float = MAX_ADAPTIVE_WEIGHT,
    average: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """clamp(||grad rec_loss|| / (||grad adv_loss|| + 1e-4), 0, max_weight) at `last_layer`, detached float32.

    `average` (DDP/FSDP2) maps a local gradient to its mean over ranks before the norms are taken.
    """
    _refuse_dtensor(last_layer)
    if not (torch.is_grad_enabled() and rec_loss.requires_grad and adv_loss.requires_grad):
        raise RuntimeError("the adaptive weight needs both losses with gradients (call it in a training step)")
    grad_rec = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0].float()
    grad_adv = torch.autograd.grad(adv_loss, last_layer, retain_graph=True)[0].float()
    if average is not None:
        grad_rec, grad_adv = average(grad_rec), average(grad_adv)
    ratio = grad_rec.norm() / (grad_adv.norm() + GRADIENT_EPS)
    return ratio.clamp(0.0, max_weight).detach()


@contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """`module` with requires_grad off for a forward (graphs built inside do not reach its parameters)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


class Adversarial(nn.Module):
    """The discriminator with its losses and LeCam state; the trainer backpropagates and steps the optimizers.

    State dict: `discriminator.*` and `lecam_ema` ([2, heads]: real row, fake row), all a resume needs
    besides the discriminator's optimizer and LR schedule.
    """

    def __init__(
        self,
        discriminator: VideoDiscriminator,
        loss: str = "hinge",
        weight: float = 0.2,
        start_iter: int = 0,
        lecam_weight: float = 0.0,
        lecam_decay: float = 0.999,
        adaptive_weight: bool = True,
        max_weight: float = MAX_ADAPTIVE_WEIGHT,
        average: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        _check_loss(loss)
        for key, value in (("weight", weight), ("lecam_weight", lecam_weight), ("max_weight", max_weight)):
            if not value >= 0.0 or value == float("inf"):
                raise ValueError(f"{SETTINGS_KEY}.{key} must be a finite number >= 0, got {value!r}")
        if not 0.0 <= lecam_decay < 1.0:
            raise ValueError(f"{SETTINGS_KEY}.lecam_decay must lie in [0, 1), got {lecam_decay!r}")
        if not isinstance(start_iter, int) or start_iter < 0:
            raise ValueError(f"{SETTINGS_KEY}.start_iter must be an integer >= 0, got {start_iter!r}")
        self.discriminator = discriminator
        self.loss = loss
        self.weight = float(weight)
        self.start_iter = start_iter
        self.lecam_weight = float(lecam_weight)
        self.lecam_decay = float(lecam_decay)
        self.use_adaptive_weight = adaptive_weight
        self.max_weight = float(max_weight)
        self.average = average
        self.register_buffer("lecam_ema", torch.zeros(2, len(discriminator.head_names), dtype=torch.float32))

    def active(self, iteration: int) -> bool:
        return adversarial_active(iteration, self.start_iter)

    def _mean(self, t: torch.Tensor) -> torch.Tensor:
        return self.average(t) if self.average is not None else t

    def discriminator_step(
        self, real: torch.Tensor, fake: torch.Tensor, discriminator: nn.Module | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The discriminator's loss on real clips and (detached) reconstructions, and detached statistics.

        Real and fake go through one forward (the logits of a clip do not depend on its batch). Updates the
        LeCam EMAs when `lecam_weight` > 0. `discriminator`: its DDP wrapper, if any (default: the plain one).
        Statistics: d_loss (without LeCam), lecam, logits_real, logits_fake (means over the heads), and per
        head `logits_real/<head>`, `logits_fake/<head>` when there are two.
        """
        if real.shape != fake.shape:
            raise ValueError(f"real {list(real.shape)} and reconstructed {list(fake.shape)} clips differ in shape")
        net = discriminator if discriminator is not None else self.discriminator
        logits = net(torch.cat([real.detach(), fake.detach().to(real.dtype)]))
        batch = real.shape[0]
        total = d_total = lecam_total = real.new_zeros((), dtype=torch.float32)
        stats: dict[str, torch.Tensor] = {}
        real_means, fake_means = [], []
        for i, (name, head_logits) in enumerate(logits.items()):
            real_logits, fake_logits = head_logits[:batch].float(), head_logits[batch:].float()
            d_loss = discriminator_loss(self.loss, real_logits, fake_logits)
            term = d_loss
            if self.lecam_weight > 0.0:
                with torch.no_grad():
                    means = self._mean(torch.stack([real_logits.mean(), fake_logits.mean()]))
                    self.lecam_ema[:, i].lerp_(means.to(self.lecam_ema), 1.0 - self.lecam_decay)
                lecam = lecam_regularization(real_logits, fake_logits, self.lecam_ema[0, i], self.lecam_ema[1, i])
                term = term + self.lecam_weight * lecam
                lecam_total = lecam_total + lecam.detach()
            total, d_total = total + term, d_total + d_loss.detach()
            real_means.append(real_logits.detach().mean())
            fake_means.append(fake_logits.detach().mean())
            if len(logits) > 1:
                stats[f"logits_real/{name}"], stats[f"logits_fake/{name}"] = real_means[-1], fake_means[-1]
        heads = len(logits)
        stats.update(
            d_loss=d_total / heads,
            lecam=lecam_total / heads,
            logits_real=torch.stack(real_means).mean(),
            logits_fake=torch.stack(fake_means).mean(),
        )
        return total / heads, stats

    def generator_term(
        self, fake: torch.Tensor, rec_loss: torch.Tensor | None = None, last_layer: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(weighted generator loss, its weight) for the tokenizer's reconstructions `fake`.

        With the adaptive weight on, `rec_loss` and `last_layer` are required (see `adaptive_weight`); the
        weight is then `weight * ratio`, otherwise `weight`. The discriminator gets no gradients from this.
        """
        with frozen(self.discriminator):
            logits = self.discriminator(fake)
        g_loss = torch.stack([generator_loss(self.loss, head) for head in logits.values()]).mean()
        if self.use_adaptive_weight:
            if rec_loss is None or last_layer is None:
                raise ValueError(f"{SETTINGS_KEY}.adaptive_weight needs rec_loss and the decoder's last layer")
            weight = self.weight * adaptive_weight(rec_loss, g_loss, last_layer, self.max_weight, self.average)
        else:
            weight = g_loss.new_tensor(self.weight)
        return weight * g_loss, weight


def build_adversarial(
    config: AdversarialConfig, average: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> Adversarial:
    """The `Adversarial` module `loss.adversarial.*` describes, with a freshly initialized discriminator (it draws
    from torch's global RNG: seed it the same on every rank). `average`: the mean over ranks (DDP, FSDP2)."""
    config.validate()
    discriminator = build_discriminator(
        config.discriminator, config.spectral_norm, config.discriminator_channels, config.discriminator_layers
    )
    return Adversarial(
        discriminator,
        loss=config.loss,
        weight=config.weight,
        start_iter=config.start_iter,
        lecam_weight=config.lecam_weight,
        lecam_decay=config.lecam_decay,
        adaptive_weight=config.adaptive_weight,
        max_weight=config.max_adaptive_weight,
        average=average,
    )
