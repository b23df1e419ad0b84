"""Training losses: weight schedules, L1 color, NVIDIA's VGG16 "lpips" and Gram terms, KL, the total.

VGG16 runs with random weights saved to a temporary torchvision-style file, on 32x32 frames.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import pytest
import torch

from vtok.checkpoint.auxiliary import load_vgg16_features
from vtok.losses import (
    LAYER_WEIGHTS,
    ColorLoss,
    KLLoss,
    LossConfig,
    PerceptualLoss,
    TokenizerLoss,
    WeightSchedule,
    build_losses,
    find_vgg16_weights,
)
from vtok.metrics.lpips import ScalingLayer
from vtok.networks.tokenizer import GaussianDistribution, TokenizerOutput
from vtok.networks.vgg import VGG16Features

VIDEO_SHAPE = (2, 3, 3, 32, 32)


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random VGG16 features in torchvision's full-model layout (with a classifier key to be ignored)."""
    torch.manual_seed(3)
    state = {f"features.{k}": v for k, v in VGG16Features().features.state_dict().items()}
    state["classifier.0.bias"] = torch.zeros(4)
    path = tmp_path_factory.mktemp("vgg") / "vgg16-397923af.pth"
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def loaded_vgg(vgg_file: Path) -> VGG16Features:
    """The file's network, loaded once; tests take copies."""
    return load_vgg16_features(vgg_file)


@pytest.fixture
def no_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An environment where no VGG16 weights can be found: empty TORCH_HOME, no $VTOK_VGG16_WEIGHTS."""
    monkeypatch.delenv("VTOK_VGG16_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home"


@pytest.fixture
def hub_weights(no_weights: Path, vgg_file: Path) -> Path:
    """The random weights placed where torchvision caches vgg16: $TORCH_HOME/hub/checkpoints/."""
    target = no_weights / "hub" / "checkpoints" / vgg_file.name
    target.parent.mkdir(parents=True)
    target.symlink_to(vgg_file)
    return target


def video_pair(shape: tuple[int, ...] = VIDEO_SHAPE, noise: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    """x in [-1,1] and a leaf x_hat near it that requires grad."""
    x = torch.rand(shape) * 2 - 1
    return x, (x + noise * torch.randn(shape)).clamp(-1, 1).requires_grad_()


def perceptual(vgg: VGG16Features, **kwargs) -> PerceptualLoss:
    kwargs.setdefault("dtype", torch.float32)
    return PerceptualLoss(copy.deepcopy(vgg), **kwargs)


def hand_lpips(vgg: VGG16Features, x: torch.Tensor, x_hat: torch.Tensor, weight: float = 0.1) -> torch.Tensor:
    """Spec 4.3 by hand: per frame sum_k w_k mean_{c,h,w} |phi_k(x) - phi_k(x_hat)|, mean over B*T, times weight."""
    scaling = ScalingLayer()
    b, c, t, h, w = x.shape
    frames = [v.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w) for v in (x, x_hat)]
    with torch.no_grad():
        taps_x, taps_y = (vgg(scaling(f)) for f in frames)
    per_frame = sum(wk * (fx - fy).abs().mean(dim=(1, 2, 3)) for wk, fx, fy in zip(LAYER_WEIGHTS, taps_x, taps_y))
    return weight * per_frame.mean()


def test_schedule_semantics() -> None:
    piecewise = WeightSchedule([500000], [0.1, 0.073])
    assert [piecewise(i) for i in (0, 499999, 500000, 10**9)] == [0.1, 0.1, 0.073, 0.073]
    same_length = WeightSchedule([0], [0.1])  # video_basic's perceptual weight: the last value applies throughout
    assert same_length(0) == same_length(10**9) == 0.1
    steps = WeightSchedule([10, 20], [1.0, 2.0])
    assert [steps(i) for i in (9, 10, 19, 20, 99)] == [1.0, 2.0, 2.0, 2.0, 2.0]
    assert WeightSchedule.constant(3.0)(7) == 3.0
    assert WeightSchedule([5], [0.0, 0.0]).always_zero and not piecewise.always_zero


@pytest.mark.parametrize(
    "boundaries, values", [([0], []), ([0], [1.0, 2.0, 3.0]), ([10, 5], [1.0, 2.0, 3.0]), ([0], [float("nan")])]
)
def test_schedule_rejects_invalid(boundaries: list, values: list) -> None:
    with pytest.raises(ValueError, match="weight schedule"):
        WeightSchedule(boundaries, values)


def test_color_loss_hand_example() -> None:
    x = torch.zeros(1, 3, 2, 2, 2)
    x_hat = torch.zeros(1, 3, 2, 2, 2)
    x_hat[0, 0, 0, 0, 0], x_hat[0, 1, 1, 1, 1] = 0.5, -1.5
    assert ColorLoss()(x, x_hat, 0).item() == pytest.approx(2.0 / 24)
    assert ColorLoss(WeightSchedule([5], [0.0, 2.0]))(x, x_hat, 5).item() == pytest.approx(4.0 / 24)


def test_perceptual_matches_hand_computation(hub_weights: Path, loaded_vgg: VGG16Features) -> None:
    assert find_vgg16_weights() == hub_weights
    config = LossConfig()
    config.perceptual.dtype = "float32"
    loss = build_losses(config, on_missing_weights="error")
    x, x_hat = video_pair()
    losses, _ = loss(x, x_hat, iteration=0)
    expected = hand_lpips(loaded_vgg, x, x_hat)
    assert expected > 0
    torch.testing.assert_close(losses["lpips"], expected, rtol=1e-5, atol=0)


def test_weights_path_and_environment(vgg_file: Path, no_weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert find_vgg16_weights() is None
    assert find_vgg16_weights(str(vgg_file)) == vgg_file
    assert find_vgg16_weights(vgg_file.parent) == vgg_file  # a folder holding the file
    monkeypatch.setenv("VTOK_VGG16_WEIGHTS", str(vgg_file))
    assert find_vgg16_weights() == vgg_file
    monkeypatch.setenv("VTOK_VGG16_WEIGHTS", str(no_weights / "typo.pth"))
    with pytest.raises(FileNotFoundError, match="typo.pth"):
        find_vgg16_weights()


def test_perceptual_zero_for_identical_inputs(loaded_vgg: VGG16Features) -> None:
    x, _ = video_pair()
    assert perceptual(loaded_vgg)(x, x.clone(), 0)["lpips"].item() == 0.0


def test_gradients_reach_x_hat_only(loaded_vgg: VGG16Features) -> None:
    loss = perceptual(loaded_vgg, dtype=torch.bfloat16)
    x, x_hat = video_pair()
    x.requires_grad_()
    loss(x, x_hat, 0)["lpips"].backward()
    assert x_hat.grad is not None and x_hat.grad.abs().sum() > 0 and x_hat.grad.dtype == torch.float32
    assert x.grad is None
    assert all(not p.requires_grad and p.grad is None for p in loss.parameters())


def test_bf16_close_to_fp32(loaded_vgg: VGG16Features) -> None:
    x, x_hat = video_pair()
    full = perceptual(loaded_vgg, dtype=torch.float32)(x, x_hat, 0)["lpips"]
    half = perceptual(loaded_vgg, dtype=torch.bfloat16)(x, x_hat, 0)["lpips"]
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, full, rtol=1e-2, atol=0)


def test_checkpointed_and_chunked_match_plain(loaded_vgg: VGG16Features) -> None:
    x, x_hat = video_pair()
    results = []
    for options in ({}, {"checkpoint_activations": True}, {"checkpoint_activations": True, "chunk_frames": 4}):
        x_hat.grad = None
        value = perceptual(loaded_vgg, **options)(x, x_hat, 0)["lpips"]
        value.backward()
        results.append((value.detach(), x_hat.grad.clone()))
    for value, grad in results[1:]:
        torch.testing.assert_close(value, results[0][0], rtol=1e-5, atol=0)
        torch.testing.assert_close(grad, results[0][1], rtol=1e-4, atol=1e-9)


def test_missing_weights_drop_the_term_with_one_warning(no_weights: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        loss = build_losses(LossConfig())
    assert loss.perceptual is None
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "perceptual loss OFF" in message and "VTOK_VGG16_WEIGHTS" in message and "\n" not in message
    x, x_hat = video_pair((1, 3, 1, 16, 16))
    assert set(loss(x, x_hat, 0)[0]) == {"color"}
    with pytest.raises(FileNotFoundError, match="vgg16-397923af.pth"):
        build_losses(LossConfig(), on_missing_weights="error")


def test_disabled_perceptual_needs_no_weights(no_weights: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = LossConfig()
    config.perceptual.enabled = False
    with caplog.at_level(logging.WARNING):
        assert build_losses(config, on_missing_weights="error").perceptual is None
    assert not caplog.records


def test_kl_for_vae_posteriors_only() -> None:
    z = torch.randn(2, 8, 2, 4, 4)
    _, (mean, logvar) = GaussianDistribution()(z)
    by_hand = 1e-6 * (0.5 * (mean**2 + logvar.exp() - 1 - logvar)).mean()
    torch.testing.assert_close(KLLoss()(mean, logvar, 0), by_hand)
    x, x_hat = video_pair((1, 3, 1, 8, 8))
    loss = TokenizerLoss(kl=KLLoss())
    vae = loss(x, TokenizerOutput(x_hat, (mean, logvar), mean), 0)[0]
    torch.testing.assert_close(vae["kl"], by_hand)
    ae = loss(x, TokenizerOutput(x_hat, (torch.zeros(1), torch.zeros(1)), mean), 0)[0]
    fsq = loss(x, TokenizerOutput(x_hat, torch.zeros(1, 1, 1, 1, 1), mean.int()), 0)[0]
    assert "kl" not in ae and "kl" not in fsq


def test_total_is_the_sum_of_terms(loaded_vgg: VGG16Features) -> None:
    x, x_hat = video_pair()
    _, (mean, logvar) = GaussianDistribution()(torch.randn(2, 8, 1, 4, 4))
    loss = TokenizerLoss(ColorLoss(), perceptual(loaded_vgg), KLLoss())
    losses, total = loss(x, TokenizerOutput(x_hat, (mean, logvar), mean), 0)
    assert set(losses) == {"color", "lpips", "kl"}
    torch.testing.assert_close(losses["color"], ColorLoss()(x, x_hat, 0))
    torch.testing.assert_close(losses["lpips"], hand_lpips(loaded_vgg, x, x_hat), rtol=1e-5, atol=0)
    torch.testing.assert_close(total, losses["color"] + losses["lpips"] + losses["kl"])
    total.backward()
    assert x_hat.grad is not None


def test_loss_mask_removes_masked_pixels(loaded_vgg: VGG16Features) -> None:
    x, x_hat = video_pair()
    mask = torch.ones(VIDEO_SHAPE[0], 1, *VIDEO_SHAPE[2:])
    mask[..., :16] = 0
    changed = x_hat.detach().clone()
    changed[..., :16] = -x_hat.detach()[..., :16]
    color = ColorLoss()
    masked = color(x, x_hat, 0, mask)
    assert color(x, changed, 0, mask) == masked
    torch.testing.assert_close(masked, ((x - x_hat).abs()[..., 16:].sum() / x.numel()))
    lpips = perceptual(loaded_vgg)
    unmasked = lpips(x, x_hat, 0)["lpips"]
    torch.testing.assert_close(lpips(x, x_hat, 0, torch.ones(1, 1, 1, 1, 1))["lpips"], unmasked)
    assert lpips(x, x_hat, 0, torch.zeros_like(mask))["lpips"].item() == 0.0
    assert 0 < lpips(x, x_hat, 0, mask)["lpips"] < unmasked
    _, total = TokenizerLoss(color, lpips)(x, x_hat, 0, torch.zeros_like(mask))
    assert total.item() == 0.0


def test_gram_term(loaded_vgg: VGG16Features) -> None:
    x, x_hat = video_pair()
    schedule = WeightSchedule([1], [0.0, 0.5])
    loss = perceptual(loaded_vgg, gram_schedule=schedule)
    assert loss(x, x_hat, 0)["gram"].item() == 0.0  # weight 0 before iteration 1
    gram = loss(x, x_hat, 1)["gram"]
    vgg, scaling = loaded_vgg, ScalingLayer()
    b, c, t, h, w = x.shape
    by_hand = 0.0
    for weight, fx, fy in zip(
        LAYER_WEIGHTS, *(vgg(scaling(v.detach().transpose(1, 2).reshape(b * t, c, h, w))) for v in (x, x_hat))
    ):
        feats = [f.reshape(b, t, *f.shape[1:]).transpose(1, 2).flatten(2) for f in (fx, fy)]  # [B,C,T*h*w]
        gx, gy = (f @ f.transpose(1, 2) / f.shape[-1] for f in feats)
        by_hand = by_hand + weight * (gx - gy).square().mean(dim=(1, 2))
    torch.testing.assert_close(gram, 0.5 * by_hand.mean(), rtol=1e-4, atol=0)
    chunked = perceptual(loaded_vgg, gram_schedule=schedule, chunk_frames=2)(x, x_hat, 1)["gram"]
    torch.testing.assert_close(chunked, gram, rtol=1e-5, atol=0)
    assert loss(x, x.clone(), 1)["gram"].item() == 0.0


def saved_bytes(loss: PerceptualLoss, x: torch.Tensor, x_hat: torch.Tensor) -> int:
    """Bytes autograd keeps for backward while the loss runs forward."""
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss(x, x_hat, 0)
    return total


def test_chunking_keeps_only_inputs_for_backward(loaded_vgg: VGG16Features) -> None:
    """With chunk_frames, backward keeps the chunks' x and x_hat frames only; NVIDIA's per-slice option keeps more."""
    x, x_hat = video_pair()
    input_bytes = x.numel() * x.element_size()
    plain = saved_bytes(perceptual(loaded_vgg), x, x_hat)
    sliced = saved_bytes(perceptual(loaded_vgg, checkpoint_activations=True), x, x_hat)
    chunked = saved_bytes(perceptual(loaded_vgg, chunk_frames=2), x, x_hat)
    assert chunked < 3 * input_bytes < sliced < plain
