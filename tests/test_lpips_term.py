"""LPIPS-VGG as a training term: the metric's distance per frame, chunking, schedule, missing weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vtok.losses.lpips_term import LPIPSLoss, build_lpips_loss
from vtok.losses.schedules import WeightSchedule
from vtok.metrics.lpips import LPIPS, WEIGHTS_ENV
from vtok.networks.vgg import TAP_CHANNELS, VGG16Features


@pytest.fixture(scope="module")
def weights_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random weights in the two files `vtok evaluate` reads (torchvision's vgg16, lpips' heads)."""
    torch.manual_seed(30)
    folder = tmp_path_factory.mktemp("lpips_term")
    torch.save(VGG16Features().state_dict(), folder / "vgg16.pth")
    torch.save(
        {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate(TAP_CHANNELS)}, folder / "vgg.pth"
    )
    return folder


def videos(seed: int, shape: tuple[int, ...] = (2, 3, 3, 32, 32)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g) * 2 - 1
    return x, (x + 0.2 * torch.randn(shape, generator=g)).clamp(-1, 1)


def test_term_is_the_weighted_mean_of_the_metric_over_frames(weights_folder: Path) -> None:
    term = build_lpips_loss(weights_folder, WeightSchedule([2], [0.0, 0.5]))
    metric = LPIPS.from_files(weights_folder / "vgg16.pth", weights_folder / "vgg.pth")
    x, y = videos(1)
    per_frame = [metric(x[b : b + 1, :, t], y[b : b + 1, :, t]) for b in range(2) for t in range(3)]
    expected = 0.5 * torch.cat(per_frame).mean()
    assert term(x, y, iteration=5).item() == pytest.approx(expected.item(), rel=1e-5)
    assert term(x, y, iteration=1).item() == 0.0
    assert term(x, x.clone(), iteration=5).item() == 0.0
    assert term(x[:, :, 0], y[:, :, 0], iteration=5).item() == pytest.approx(
        0.5 * metric(x[:, :, 0], y[:, :, 0]).mean().item(), rel=1e-5
    )  # images [B,3,H,W] too


def test_chunked_frames_give_the_same_value_and_gradient(weights_folder: Path) -> None:
    whole = build_lpips_loss(weights_folder)
    chunked = build_lpips_loss(weights_folder, chunk_frames=4)
    x, y = videos(2)
    grads = []
    values = []
    for term in (whole, chunked):
        y_leaf = y.clone().requires_grad_(True)
        x_leaf = x.clone().requires_grad_(True)
        value = term(x_leaf, y_leaf, iteration=0)
        value.backward()
        assert x_leaf.grad is None  # the reference frames get no gradient
        values.append(value.detach())
        grads.append(y_leaf.grad)
    assert torch.allclose(values[0], values[1], rtol=1e-5, atol=0)
    assert grads[0].abs().sum() > 0 and torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-9)
    assert not any(p.requires_grad for p in chunked.parameters())
    chunked.train()
    assert not chunked.lpips.training


def test_missing_or_incomplete_weights_are_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match=rf"\${WEIGHTS_ENV}.*loss\.lpips\.enabled=false"):
        build_lpips_loss()
    (tmp_path / "vgg16.pth").write_bytes(b"")
    with pytest.raises(ValueError, match=rf"{tmp_path} lacks vgg\.pth"):
        build_lpips_loss(tmp_path)
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="lacks"):
        build_lpips_loss()


def test_bad_inputs(weights_folder: Path) -> None:
    term = build_lpips_loss(weights_folder)
    x, y = videos(3)
    with pytest.raises(ValueError, match="one shape"):
        term(x, y[:, :, :2], iteration=0)
    with pytest.raises(ValueError, match="chunk_frames"):
        LPIPSLoss(term.lpips, chunk_frames=-1)
