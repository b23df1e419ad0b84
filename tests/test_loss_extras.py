"""The optional loss terms (docs/design.md#losses): video consistency over overlapping windows, and the flow loss with a
TorchScript flow network given as a file (a small random one here; RAFT in real use)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vtok.config import parse_train_args
from vtok.losses import LossConfig, WeightSchedule, build_losses
from vtok.losses.consistency import VideoConsistencyLoss, check_windows, window_count
from vtok.losses.flow import FlowLoss, find_flow_network, load_flow_network
from vtok.networks.tokenizer import TokenizerOutput

TC = 4


def causal_latent(windows: torch.Tensor, tc: int) -> torch.Tensor:
    """A stand-in causal encoder: latent 0 is frame 0, latent k >= 1 the mean of frames 1+(k-1)tc .. k*tc."""
    first = windows[:, :, :1]
    rest = windows[:, :, 1:].unflatten(2, (-1, tc)).mean(3)
    return torch.cat([first, rest], dim=2)


def consistency(num_frames: int = 9, step: int = 4, latent_weight: float = 1.0) -> VideoConsistencyLoss:
    return VideoConsistencyLoss(WeightSchedule.constant(1.0), num_frames, step, TC, latent_weight)


def test_unfold_makes_the_overlapping_windows_in_order():
    x = torch.randn(2, 3, 17, 4, 5)
    loss = consistency()
    windows = loss.unfold(x)
    assert windows.shape == (2 * 3, 3, 9, 4, 5)
    for b in range(2):
        for w in range(3):
            torch.testing.assert_close(windows[b * 3 + w], x[b, :, 4 * w : 4 * w + 9], rtol=0, atol=0)


def test_consistent_windows_cost_nothing_and_a_disagreement_is_measured():
    x = torch.randn(2, 3, 17, 4, 4)
    loss = consistency()
    windows = loss.unfold(x)
    latent = causal_latent(windows, TC)
    assert float(loss(windows, latent, 2, 0)) == 0.0  # shared frames and shared latent frames line up exactly

    changed = windows.clone()
    changed[1, :, 6] += 1.0  # frame 6 of the 2nd window of clip 0 is frame 2 of the 3rd window
    pixel_term = float(loss(changed, None, 2, 0))
    shared_elements = 2 * 2 * 3 * 5 * 4 * 4  # clips * window pairs * C * shared frames * H * W
    assert pixel_term == pytest.approx(3 * 4 * 4 / shared_elements)
    latent_changed = latent.clone()
    latent_changed[0, :, 2] += 2.0  # latent 2 of window 0 = latent 1 of window 1; latent 0 is never compared
    latent_changed[3, :, 0] += 5.0
    weighted = consistency(latent_weight=0.5)
    expected = 0.5 * 2.0 * 3 * 4 * 4 / (2 * 2 * 3 * 1 * 4 * 4)
    assert float(weighted(windows, latent_changed, 2, 0)) == pytest.approx(expected)


def test_integer_token_latents_add_no_latent_term():
    windows = consistency().unfold(torch.randn(1, 3, 17, 4, 4))
    indices = torch.randint(0, 10, (3, 1, 3, 2, 2), dtype=torch.int32)
    assert float(consistency()(windows, indices, 1, 0)) == 0.0


@pytest.mark.parametrize(
    "frames, num_frames, step, match",
    [(17, 10, 4, "num_frames=10"), (17, 9, 3, "step=3"), (17, 9, 12, "step=12"), (12, 9, 4, "fewer than two")],
)
def test_impossible_windows_are_named(frames, num_frames, step, match):
    with pytest.raises(ValueError, match=match):
        check_windows(frames, num_frames, step, TC)


def test_window_count():
    assert window_count(17, 9, 4) == 3 and window_count(18, 9, 4) == 3 and window_count(8, 9, 4) == 0


def test_tokenizer_loss_unfolds_and_reports_the_term():
    config = LossConfig()
    config.perceptual.enabled = False
    config.video_consistency.enabled = True
    config.video_consistency.num_frames, config.video_consistency.step = 9, 4
    loss = build_losses(config, temporal_compression=TC)
    assert loss.terms == ["color", "kl", "video_consistency"]
    x = torch.rand(1, 3, 17, 8, 8) * 2 - 1
    net_in = loss.network_input(x)
    assert net_in.shape == (3, 3, 9, 8, 8)
    x_hat = net_in + 0.1
    terms, total = loss(x, TokenizerOutput(x_hat, None, causal_latent(net_in, TC)), 0)
    assert set(terms) == {"color", "video_consistency"}
    assert float(terms["color"]) == pytest.approx(0.1, rel=1e-5) and float(terms["video_consistency"]) < 1e-6
    torch.testing.assert_close(total, terms["color"] + terms["video_consistency"])
    mask = torch.zeros(1, 1, 17, 8, 8)
    masked, _ = loss(x, x_hat, 0, loss_mask=mask)
    assert float(masked["color"]) == 0.0


def test_config_checks_windows_against_the_clip_and_network():
    base = ["experiment=mock_Cosmos_Tokenize1_CV4x8x8_360p_HDVILA", "loss.video_consistency.enabled=true"]
    config, _ = parse_train_args(base + ["loss.video_consistency.num_frames=17", "loss.video_consistency.step=8"])
    assert config.model.config.loss.config.video_consistency.config.enabled
    with pytest.raises(ValueError, match="num_frames=32"):
        parse_train_args(base + ["loss.video_consistency.num_frames=32"])


class TinyFlow(nn.Module):
    """A small convolutional flow network with RAFT's call signature: (image1, image2) -> list of flows."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 3, padding=1))

    def forward(self, image1: torch.Tensor, image2: torch.Tensor) -> list[torch.Tensor]:
        flow = self.net(torch.cat([image1, image2], dim=1))
        return [flow * 0.5, flow]


@pytest.fixture(scope="module")
def flow_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("flow") / "tiny_flow.jit"
    torch.jit.script(TinyFlow().eval()).save(str(path))
    return path


def test_flow_loss_matches_a_hand_computation(flow_file):
    network = load_flow_network(flow_file)
    assert not any(p.requires_grad for p in network.parameters())
    loss = FlowLoss(network, WeightSchedule.constant(0.5), scale=2, dtype=torch.float32)
    x = torch.rand(1, 3, 3, 32, 32) * 2 - 1
    x_hat = (x + 0.2 * torch.randn_like(x)).requires_grad_(True)
    value = loss(x, x_hat, 0)

    def flows(video: torch.Tensor) -> torch.Tensor:
        frames = F.interpolate(video[0].transpose(0, 1), size=(16, 16), mode="bilinear", align_corners=False)
        a, b = frames[:-1], frames[1:]
        out = torch.cat([network(a, b)[-1], network(b, a)[-1]])
        return F.interpolate(out, size=(32, 32), mode="bilinear", align_corners=False) * 2

    torch.testing.assert_close(value, 0.5 * (flows(x_hat) - flows(x)).abs().mean())
    value.backward()
    assert x_hat.grad is not None and x_hat.grad.abs().sum() > 0
    assert float(loss(x, x, 0)) == 0.0
    assert float(FlowLoss(network, WeightSchedule([10], [0.0, 1.0]))(x, x_hat, 0)) == 0.0


def test_flow_checkpointing_gives_the_same_gradients(flow_file):
    network = load_flow_network(flow_file)
    x = torch.rand(1, 3, 3, 32, 32) * 2 - 1
    grads = []
    for checkpointed in (False, True):
        x_hat = (x * 0.9).requires_grad_(True)
        FlowLoss(network, WeightSchedule.constant(1.0), 2, torch.float32, checkpointed)(x, x_hat, 0).backward()
        grads.append(x_hat.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_flow_sizes_the_network_cannot_take_are_named(flow_file):
    loss = FlowLoss(load_flow_network(flow_file), WeightSchedule.constant(1.0), scale=2)
    with pytest.raises(ValueError, match="multiples of 8"):
        loss(torch.zeros(1, 3, 2, 24, 32), torch.zeros(1, 3, 2, 24, 32), 0)


def test_flow_network_is_found_or_the_error_says_how_to_make_one(flow_file, tmp_path, monkeypatch):
    monkeypatch.delenv("VTOK_FLOW_NETWORK", raising=False)
    with pytest.raises(FileNotFoundError, match="raft_large"):
        find_flow_network(None)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_flow_network(str(tmp_path / "missing.jit"))
    monkeypatch.setenv("VTOK_FLOW_NETWORK", str(flow_file))
    assert find_flow_network(None) == flow_file
    config = LossConfig()
    config.perceptual.enabled = False
    config.flow.enabled, config.flow.boundaries, config.flow.values = True, [0], [0.01]
    loss = build_losses(config)
    assert loss.flow is not None and "flow" in loss.terms
    config.flow.network = str(tmp_path / "missing.jit")
    with pytest.raises(FileNotFoundError, match="loss.flow.enabled=false"):
        build_losses(config)


def test_windows_sharing_no_latent_frame_compare_pixels_only():
    loss = consistency(num_frames=5, step=4)
    windows = loss.unfold(torch.randn(1, 3, 9, 4, 4))
    latent = causal_latent(windows, TC) + torch.randn(2, 3, 2, 4, 4)
    assert float(loss(windows, latent, 1, 0)) == 0.0
