"""Discriminators and the adversarial loss math: D/G losses, LeCam, the adaptive weight, start gating."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import vtok
from vtok.losses.adversarial import (
    Adversarial,
    adaptive_weight,
    adversarial_active,
    discriminator_loss,
    generator_loss,
    lecam_regularization,
)
from vtok.networks.discriminator import PatchDiscriminator, VideoDiscriminator, build_discriminator
from vtok.networks.trainable import apply_trainable, last_layer_weight

TINY_D = {"channels": 8, "num_layers": 2}  # frames of at least 12x12


def clips(seed: int, shape: tuple[int, ...] = (2, 3, 5, 16, 16)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) * 2 - 1


def test_shapes_of_the_discriminators() -> None:
    x = clips(0, (2, 3, 5, 32, 32))
    logits = build_discriminator("both", **TINY_D)(x)
    assert list(logits) == ["patch2d", "patch3d"]
    assert logits["patch2d"].shape == (2, 1, 5, 6, 6)  # per frame: 32 -> 16 -> 8 -> 7 -> 6
    assert logits["patch3d"].shape == (2, 1, 3, 6, 6)  # time stride 2 in the first conv only
    single = build_discriminator("patch3d", **TINY_D)(clips(0, (1, 3, 1, 12, 12)))["patch3d"]
    assert single.shape == (1, 1, 1, 1, 1)  # one frame and the smallest frame size still work


def test_patch2d_folds_time_into_the_batch() -> None:
    d = build_discriminator("patch2d", **TINY_D)
    x = clips(1)
    logits = d(x)["patch2d"]
    frame = d.patch2d(x[:, :, 3])
    assert torch.allclose(logits[:, :, 3], frame, atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", ["patch2d", "patch3d"])
def test_logits_of_a_clip_do_not_depend_on_its_batch(kind: str) -> None:
    """GroupNorm, not BatchNorm: real and fake share one forward; DDP ranks need no SyncBatchNorm."""
    d = build_discriminator(kind, **TINY_D).train()
    a, b = clips(2), clips(3)
    together = d(torch.cat([a, b]))[kind]
    assert torch.allclose(together[:2], d(a)[kind], atol=1e-6, rtol=0)
    assert torch.allclose(together[2:], d(b)[kind], atol=1e-6, rtol=0)


def test_parameter_counts_of_the_default_discriminators() -> None:
    def count(kind: str) -> int:
        return sum(p.numel() for p in build_discriminator(kind).parameters())

    conv2d = [(3, 64), (64, 128), (128, 256), (256, 512), (512, 1)]
    norms = 2 * (128 + 256 + 512)
    expected_2d = sum(i * o * 16 + o for i, o in conv2d) + norms
    expected_3d = sum(i * o * 48 + o for i, o in conv2d) + norms
    assert count("patch2d") == expected_2d and count("patch3d") == expected_3d
    assert count("both") == expected_2d + expected_3d


def test_spectral_norm_drops_the_norm_layers_and_keeps_state_for_resume() -> None:
    d = build_discriminator("both", spectral_norm=True, **TINY_D)
    assert not any(isinstance(m, nn.GroupNorm) for m in d.modules())
    assert any("parametrizations.weight.original" in k for k in d.state_dict())
    x = clips(4)
    d.train()(x)  # one power iteration
    copy = build_discriminator("both", spectral_norm=True, **TINY_D)
    copy.load_state_dict(d.state_dict())
    d.eval(), copy.eval()
    for name, logits in d(x).items():
        assert torch.equal(copy(x)[name], logits)
    weight = d.patch2d.layers[0].weight  # the normalized weight
    assert torch.linalg.matrix_norm(weight.flatten(1), ord=2) < 1.05


def test_hand_values_of_the_losses() -> None:
    real = torch.tensor([2.0, 0.5, -1.0])
    fake = torch.tensor([-2.0, 0.0, 1.5])
    hinge = 0.5 * ((0 + 0.5 + 2.0) / 3 + (0 + 1.0 + 2.5) / 3)
    assert discriminator_loss("hinge", real, fake).item() == pytest.approx(hinge)

    def softplus(v):
        return float(torch.log1p(torch.exp(torch.tensor(v))))

    ns = 0.5 * (sum(softplus(-r) for r in (2.0, 0.5, -1.0)) / 3 + sum(softplus(f) for f in (-2.0, 0.0, 1.5)) / 3)
    assert discriminator_loss("non_saturating", real, fake).item() == pytest.approx(ns, rel=1e-6)
    assert generator_loss("hinge", fake).item() == pytest.approx(-(-2.0 + 0.0 + 1.5) / 3)
    assert generator_loss("non_saturating", fake).item() == pytest.approx(
        sum(softplus(-f) for f in (-2.0, 0.0, 1.5)) / 3, rel=1e-6
    )
    lecam = lecam_regularization(real, fake, torch.tensor(0.25), torch.tensor(0.75))
    expected = ((2.0 - 0.75) ** 2 + 0 + 0) / 3 + ((0.25 + 2.0) ** 2 + 0.25**2 + 0) / 3
    assert lecam.item() == pytest.approx(expected)


@pytest.mark.parametrize("loss", ["hinge", "non_saturating"])
@pytest.mark.parametrize("kind", ["patch2d", "patch3d", "both"])
def test_discriminator_loss_decreases_on_a_fixed_batch(kind: str, loss: str) -> None:
    torch.manual_seed(0)
    adversarial = Adversarial(build_discriminator(kind, **TINY_D), loss=loss, lecam_weight=0.01)
    real = clips(5)
    fake = (real + 0.3 * clips(6)).clamp(-1, 1)  # a blurry-ish, noisy "reconstruction"
    optimizer = torch.optim.Adam(adversarial.discriminator.parameters(), lr=2e-3, betas=(0.5, 0.999))
    losses = []
    for _ in range(15):
        total, stats = adversarial.discriminator_step(real, fake)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        losses.append(stats["d_loss"].item())
    assert losses[-1] < 0.7 * losses[0], losses
    assert stats["logits_real"] > stats["logits_fake"]
    assert set(stats) >= {"d_loss", "lecam", "logits_real", "logits_fake"}
    if kind == "both":
        assert {"logits_real/patch2d", "logits_fake/patch3d"} <= set(stats)


def test_lecam_matches_a_hand_computation() -> None:
    d = build_discriminator("patch3d", **TINY_D)
    adversarial = Adversarial(d, loss="hinge", lecam_weight=0.5, lecam_decay=0.9)
    ema_real = ema_fake = 0.0
    for seed in (7, 8):
        real, fake = clips(seed), clips(seed + 10)
        with torch.no_grad():
            logits_real, logits_fake = d(real)["patch3d"], d(fake)["patch3d"]
        ema_real = 0.9 * ema_real + 0.1 * logits_real.mean().item()  # updated with this batch, then used
        ema_fake = 0.9 * ema_fake + 0.1 * logits_fake.mean().item()
        reg = (F.relu(logits_real - ema_fake) ** 2).mean() + (F.relu(ema_real - logits_fake) ** 2).mean()
        hinge = 0.5 * (F.relu(1 - logits_real).mean() + F.relu(1 + logits_fake).mean())
        total, stats = adversarial.discriminator_step(real, fake)
        assert adversarial.lecam_ema.flatten().tolist() == pytest.approx([ema_real, ema_fake], abs=1e-6)
        assert stats["lecam"].item() == pytest.approx(reg.item(), rel=1e-5)
        assert total.item() == pytest.approx((hinge + 0.5 * reg).item(), rel=1e-5)


def test_adaptive_weight_is_the_gradient_norm_ratio_by_hand() -> None:
    """A linear last layer y = W h: d mean|y - t| / dW = sign(y - t) h^T / N, d(-mean(v.y)) / dW = -v 1^T h / N'."""
    g = torch.Generator().manual_seed(9)
    h, target = torch.randn(4, 10, generator=g), torch.randn(3, 10, generator=g)
    v = torch.randn(3, 1, generator=g)
    weight = torch.randn(3, 4, generator=g, requires_grad=True)
    y = weight @ h
    rec = (y - target).abs().mean()
    adv = -(v * y).mean()
    grad_rec = torch.sign(y.detach() - target) @ h.T / y.numel()
    grad_adv = -(v @ h.sum(dim=1, keepdim=True).T) / y.numel()
    expected = grad_rec.norm() / (grad_adv.norm() + 1e-4)
    assert adaptive_weight(rec, adv, weight).item() == pytest.approx(expected.item(), rel=1e-6)
    assert weight.grad is None  # autograd.grad accumulates nothing
    assert adaptive_weight(100 * rec, 0.0 * y.sum(), weight).item() == 1e4  # clamped
    calls = []
    adaptive_weight(rec, adv, weight, average=lambda t: calls.append(t.shape) or t)
    assert calls == [weight.shape, weight.shape]


def test_generator_term_on_a_tiny_tokenizer_matches_separate_backward_passes() -> None:
    torch.manual_seed(0)
    network = vtok.build_tokenizer("CV4x8x8-360p", channels=16, num_res_blocks=1)
    apply_trainable(network, "decoder")
    adversarial = Adversarial(build_discriminator("both", **TINY_D), loss="non_saturating", weight=0.5)
    x = clips(11, (1, 3, 5, 16, 16))

    def losses() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fake = network(x).reconstructions
        rec = (fake - x).abs().mean()
        logits = adversarial.discriminator(fake)
        g = torch.stack([F.softplus(-logit).mean() for logit in logits.values()]).mean()
        return fake, rec, g

    grads = []
    for pick in (1, 2):
        network.zero_grad(set_to_none=True)
        losses()[pick].backward()
        grads.append(network.decoder.conv_out[1].conv3d.weight.grad.clone())
    adversarial.discriminator.zero_grad(set_to_none=True)
    expected = 0.5 * grads[0].norm() / (grads[1].norm() + 1e-4)

    network.zero_grad(set_to_none=True)
    fake, rec, g = losses()
    term, weight = adversarial.generator_term(fake, rec, last_layer_weight(network))
    assert weight.item() == pytest.approx(expected.item(), rel=1e-5)
    assert term.item() == pytest.approx((weight * g).item(), rel=1e-5)
    (rec + term).backward()
    assert all(p.grad is None for p in adversarial.discriminator.parameters())  # D gets nothing from G's loss
    assert all(p.requires_grad for p in adversarial.discriminator.parameters())
    fixed = Adversarial(build_discriminator("patch2d", **TINY_D), weight=0.25, adaptive_weight=False)
    assert fixed.generator_term(fake)[1].item() == 0.25


def test_state_dict_restores_the_next_losses_exactly() -> None:
    torch.manual_seed(0)
    first = Adversarial(build_discriminator("both", **TINY_D), lecam_weight=0.1)
    optimizer = torch.optim.Adam(first.discriminator.parameters(), lr=1e-3)
    for seed in (12, 13):
        total, _ = first.discriminator_step(clips(seed), clips(seed + 1))
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    torch.manual_seed(1)
    second = Adversarial(build_discriminator("both", **TINY_D), lecam_weight=0.1)
    second.load_state_dict(first.state_dict())
    assert "lecam_ema" in first.state_dict()
    a, stats_a = first.discriminator_step(clips(20), clips(21))
    b, stats_b = second.discriminator_step(clips(20), clips(21))
    assert torch.equal(a, b) and all(torch.equal(stats_a[k], stats_b[k]) for k in stats_a)


def test_bf16_autocast() -> None:
    adversarial = Adversarial(build_discriminator("both", **TINY_D), lecam_weight=0.01)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total, _ = adversarial.discriminator_step(clips(14), clips(15))
    total.backward()
    assert total.dtype == torch.float32 and adversarial.lecam_ema.dtype == torch.float32
    assert all(torch.isfinite(p.grad).all() for p in adversarial.discriminator.parameters())


def test_start_iter_gating() -> None:
    assert not adversarial_active(9, 10) and adversarial_active(10, 10) and adversarial_active(0, 0)
    assert Adversarial(build_discriminator("patch2d", **TINY_D), start_iter=5).active(5)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: build_discriminator("patch4d"), r"loss\.adversarial\.discriminator must be one of"),
        (lambda: Adversarial(build_discriminator("patch2d", **TINY_D), loss="wgan"), r"loss\.adversarial\.loss"),
        (lambda: Adversarial(build_discriminator("patch2d", **TINY_D), weight=-1.0), r"loss\.adversarial\.weight"),
        (
            lambda: Adversarial(build_discriminator("patch2d", **TINY_D), lecam_weight=float("nan")),
            r"loss\.adversarial\.lecam_weight",
        ),
        (
            lambda: Adversarial(build_discriminator("patch2d", **TINY_D), start_iter=-1),
            r"loss\.adversarial\.start_iter",
        ),
        (lambda: build_discriminator("patch2d", **TINY_D)(clips(0, (1, 3, 5, 8, 8))), "at least 12x12"),
        (lambda: Adversarial(build_discriminator("patch2d", **TINY_D)).generator_term(clips(0)), "adaptive_weight"),
    ],
)
def test_errors_name_the_setting(build, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_patch_discriminator_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="dims must be 2 or 3"):
        PatchDiscriminator(4)
    with pytest.raises(ValueError, match=r"\[B,3,T,H,W\]"):
        VideoDiscriminator("patch2d", **TINY_D)(torch.zeros(1, 3, 16, 16))
