"""Metrics: PSNR/MSE against numpy, SSIM against skimage, VGG16 layout, LPIPS formula and file loading."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from vtok.checkpoint.auxiliary import load_vgg16_features
from vtok.metrics import (
    LPIPS,
    ScalingLayer,
    find_lpips_weights,
    frame_mse,
    lpips_per_frame,
    pooled_psnr,
    psnr_from_mse,
    ssim_per_frame,
    to_uint8,
)
from vtok.networks.vgg import VGG16Features

# torchvision's vgg16().features: (index of each conv, weight shape); its bias is [out].
VGG16_CONVS = [
    (0, (64, 3, 3, 3)),
    (2, (64, 64, 3, 3)),
    (5, (128, 64, 3, 3)),
    (7, (128, 128, 3, 3)),
    (10, (256, 128, 3, 3)),
    (12, (256, 256, 3, 3)),
    (14, (256, 256, 3, 3)),
    (17, (512, 256, 3, 3)),
    (19, (512, 512, 3, 3)),
    (21, (512, 512, 3, 3)),
    (24, (512, 512, 3, 3)),
    (26, (512, 512, 3, 3)),
    (28, (512, 512, 3, 3)),
]
TAP_CHANNELS = (64, 128, 256, 512, 512)


def random_frames(*shape: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def smooth_frames(t: int, h: int, w: int, c: int, seed: int) -> torch.Tensor:
    """Structured content: sums of random low-frequency sinusoids, so windows have real structure."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    frames = torch.zeros(t, h, w, c, dtype=torch.float64)
    for _ in range(4):
        fy, fx, phase = (
            torch.rand(3, t, 1, 1, c, generator=g, dtype=torch.float64)
            * torch.tensor([0.3, 0.3, 6.3], dtype=torch.float64).view(3, 1, 1, 1, 1)
        ).unbind(0)
        frames += torch.sin(fy * yy[None, :, :, None] + fx * xx[None, :, :, None] + phase)
    return ((frames / 8 + 0.5) * 255).round().clamp(0, 255).to(torch.uint8)


def perturbed(frames: torch.Tensor, amount: int, seed: int) -> torch.Tensor:
    noise = torch.randint(-amount, amount + 1, frames.shape, generator=torch.Generator().manual_seed(seed))
    return (frames.int() + noise).clamp(0, 255).to(torch.uint8)


# --- MSE / PSNR -------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [3, 1])
def test_frame_mse_and_psnr_match_numpy(channels: int) -> None:
    ref, test = random_frames(4, 19, 23, channels, seed=1), random_frames(4, 19, 23, channels, seed=2)
    diff = ref.numpy().astype(np.float64) - test.numpy().astype(np.float64)
    expected_mse = (diff**2).reshape(4, -1).mean(axis=1)
    mse = frame_mse(ref, test)
    assert mse.dtype == torch.float64 and mse.shape == (4,)
    np.testing.assert_allclose(mse.numpy(), expected_mse, rtol=0, atol=1e-12)
    psnr = psnr_from_mse(mse)
    assert psnr.dtype == torch.float64
    np.testing.assert_allclose(psnr.numpy(), 10 * np.log10(255.0**2 / (expected_mse + 1e-8)), rtol=1e-12)


def test_identical_frames_give_zero_mse_and_capped_psnr() -> None:
    frames = random_frames(3, 8, 8, 3, seed=3)
    mse = frame_mse(frames, frames.clone())
    assert torch.equal(mse, torch.zeros(3, dtype=torch.float64))
    assert torch.allclose(psnr_from_mse(mse), torch.full((3,), 10 * math.log10(255.0**2 / 1e-8), dtype=torch.float64))
    assert pooled_psnr(mse) == math.inf


def test_pooled_psnr_is_psnr_of_mean_mse_not_mean_of_psnrs() -> None:
    mse = torch.tensor([1.0, 100.0, 10.0], dtype=torch.float64)
    pooled = pooled_psnr(mse)
    assert pooled == pytest.approx(10 * math.log10(255.0**2 / 37.0), abs=1e-12)
    assert pooled < psnr_from_mse(mse).mean().item() - 1  # bad frames weigh more when pooled
    with pytest.raises(ValueError):
        pooled_psnr(torch.zeros(0))


@pytest.mark.parametrize("fn", [frame_mse, ssim_per_frame])
def test_frame_pair_checks(fn) -> None:
    a = random_frames(2, 9, 9, 3, seed=4)
    with pytest.raises(ValueError, match=r"\(2, 9, 9, 3\).*\(2, 9, 8, 3\)"):
        fn(a, a[:, :, :8])
    with pytest.raises(ValueError, match="uint8"):
        fn(a, a.float())
    with pytest.raises(ValueError, match="4 dims"):
        fn(a[0], a[0])


def test_to_uint8_matches_nvidia_quantization() -> None:
    x = torch.tensor([-1.0, 1.0, 0.0, -3.0, 2.5, 0.5, -0.5, 1 / 255 - 1, 1 / 255 - 1 - 1e-4])
    out = to_uint8(x)
    assert out.dtype == torch.uint8
    # 0.5 -> 191.25+0.5; -0.5 -> 63.75+0.5; one half step either side of the 0|1 boundary
    assert out.tolist() == [0, 255, 128, 0, 255, 191, 64, 1, 0]
    assert to_uint8(torch.zeros(2, 3, dtype=torch.bfloat16)).tolist() == [[128] * 3] * 2


# --- SSIM -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("height", "width", "channels"), [(37, 53, 3), (64, 64, 3), (7, 7, 3), (41, 29, 1)])
@pytest.mark.parametrize("content", ["random", "smooth"])
def test_ssim_matches_skimage(height: int, width: int, channels: int, content: str) -> None:
    metrics = pytest.importorskip("skimage.metrics")
    if content == "random":
        ref = random_frames(3, height, width, channels, seed=5)
        test = torch.cat(
            [perturbed(ref[:1], 10, 6), random_frames(1, height, width, channels, seed=7), perturbed(ref[2:], 60, 8)]
        )
    else:
        ref = smooth_frames(3, height, width, channels, seed=9)
        test = torch.cat([perturbed(ref[:1], 3, 10), ref[1:2].flip(1), perturbed(ref[2:], 40, 11)])
    ours = ssim_per_frame(ref, test)
    assert ours.dtype == torch.float64 and ours.shape == (3,)
    expected = [
        metrics.structural_similarity(r.numpy(), t.numpy(), data_range=255, channel_axis=-1) for r, t in zip(ref, test)
    ]
    np.testing.assert_allclose(ours.numpy(), expected, rtol=0, atol=1e-6)


def test_ssim_chunks_agree_and_identical_frames_give_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import vtok.metrics.ssim as ssim_module

    ref = smooth_frames(5, 16, 20, 3, seed=12)
    test = perturbed(ref, 20, 13)
    whole = ssim_per_frame(ref, test)
    monkeypatch.setattr(ssim_module, "CHUNK_PIXELS", 1)  # one frame per chunk
    assert torch.allclose(ssim_per_frame(ref, test), whole, rtol=0, atol=1e-15)
    assert torch.allclose(ssim_per_frame(ref, ref.clone()), torch.ones(5, dtype=torch.float64), rtol=0, atol=1e-12)
    assert ssim_per_frame(ref[:0], test[:0]).shape == (0,)


def test_ssim_rejects_frames_smaller_than_the_window() -> None:
    a = random_frames(1, 6, 30, 3, seed=14)
    with pytest.raises(ValueError, match="7x7"):
        ssim_per_frame(a, a)


# --- VGG16 ------------------------------------------------------------------------------------------


def test_vgg16_features_layout_matches_torchvision() -> None:
    state = VGG16Features().state_dict()
    expected = {}
    for index, shape in VGG16_CONVS:
        expected[f"features.{index}.weight"] = shape
        expected[f"features.{index}.bias"] = shape[:1]
    assert list(state) == list(expected)
    assert {k: tuple(v.shape) for k, v in state.items()} == expected


def test_vgg16_taps_shapes() -> None:
    taps = VGG16Features().eval()(torch.randn(2, 3, 64, 64))
    assert [tuple(t.shape) for t in taps] == [(2, c, 64 >> k, 64 >> k) for k, c in enumerate(TAP_CHANNELS)]
    assert all((t >= 0).all() for t in taps)  # taken after the ReLUs


# --- LPIPS ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """torchvision-style vgg16 file (with stand-in classifier tensors) and lpips-style head file."""
    torch.manual_seed(20)
    folder = tmp_path_factory.mktemp("lpips")
    vgg_state = VGG16Features().state_dict()
    vgg_state["classifier.0.weight"] = torch.randn(8, 4)  # real ones are 4096x25088: ignored anyway
    vgg_state["classifier.6.bias"] = torch.randn(8)
    torch.save(vgg_state, folder / "vgg16-397923af.pth")
    lin_state = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate(TAP_CHANNELS)}
    torch.save(lin_state, folder / "vgg.pth")
    return folder / "vgg16-397923af.pth", folder / "vgg.pth"


@pytest.fixture(scope="module")
def lpips_model(weight_files: tuple[Path, Path]) -> LPIPS:
    return LPIPS.from_files(*weight_files)


def test_lpips_loads_files_strictly(weight_files: tuple[Path, Path], lpips_model: LPIPS) -> None:
    vgg_file, lin_file = weight_files
    saved = torch.load(vgg_file, weights_only=True)
    assert torch.equal(lpips_model.net.features[28].weight, saved["features.28.weight"])
    for k, lin in enumerate(lpips_model.lins()):
        assert torch.equal(lin.model[1].weight, torch.load(lin_file, weights_only=True)[f"lin{k}.model.1.weight"])
    assert not any(p.requires_grad for p in lpips_model.parameters()) and not lpips_model.training


def test_vgg_loader_accepts_features_only_files(tmp_path: Path, weight_files: tuple[Path, Path]) -> None:
    saved = torch.load(weight_files[0], weights_only=True)
    features = {k: v for k, v in saved.items() if k.startswith("features.")}
    torch.save(features, tmp_path / "prefixed.pth")
    torch.save({k.removeprefix("features."): v for k, v in features.items()}, tmp_path / "bare.pth")
    for name in ("prefixed.pth", "bare.pth"):
        loaded = load_vgg16_features(tmp_path / name)
        assert torch.equal(loaded.features[0].bias, saved["features.0.bias"])


def test_lpips_wrong_files_raise_naming_them(tmp_path: Path, weight_files: tuple[Path, Path]) -> None:
    vgg_file, lin_file = weight_files
    with pytest.raises(ValueError, match=r"vgg\.pth.*VGG16Features.*missing"):
        LPIPS.from_files(lin_file, lin_file)
    with pytest.raises(ValueError, match=r"vgg16-397923af\.pth.*linear heads.*unexpected"):
        LPIPS.from_files(vgg_file, vgg_file)
    bad = {**torch.load(lin_file, weights_only=True), "lin4.model.1.weight": torch.rand(1, 256, 1, 1)}
    torch.save(bad, tmp_path / "bad_heads.pth")
    with pytest.raises(ValueError, match=r"bad_heads\.pth.*wrong shape.*lin4"):
        LPIPS.from_files(vgg_file, tmp_path / "bad_heads.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"text\.pth.*not a PyTorch checkpoint"):
        load_vgg16_features(tmp_path / "text.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(ValueError, match=r"list\.pth.*dict of tensors"):
        load_vgg16_features(tmp_path / "list.pth")


def images(seed: int, n: int = 2, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_lpips_distance_properties(lpips_model: LPIPS) -> None:
    x, y = images(21), images(22)
    assert torch.equal(lpips_model(x, x.clone()), torch.zeros(2))
    d_xy, d_yx = lpips_model(x, y), lpips_model(y, x)
    assert d_xy.shape == (2,) and (d_xy > 0).all()
    assert torch.allclose(d_xy, d_yx, rtol=1e-6, atol=0)


def test_lpips_matches_hand_computation(lpips_model: LPIPS) -> None:
    x, y = images(23), images(24)
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    assert torch.allclose(ScalingLayer()(x), (x - shift) / scale)
    taps_x, taps_y = lpips_model.net((x - shift) / scale), lpips_model.net((y - shift) / scale)
    expected = torch.zeros(2, dtype=torch.float64)
    for k, (fx, fy) in enumerate(zip(taps_x, taps_y)):
        fx, fy = fx.double(), fy.double()
        nx = fx / (fx.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
        ny = fy / (fy.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
        w = getattr(lpips_model, f"lin{k}").model[1].weight.double().view(1, -1, 1, 1)
        expected += ((nx - ny) ** 2 * w).sum(dim=1).mean(dim=(1, 2))
    assert torch.allclose(lpips_model(x, y).double(), expected, rtol=1e-5, atol=0)


def test_lpips_per_frame(lpips_model: LPIPS) -> None:
    ref, test = random_frames(5, 32, 32, 3, seed=25), random_frames(5, 32, 32, 3, seed=26)
    out = lpips_per_frame(lpips_model, ref, test, chunk_frames=2)
    assert out.dtype == torch.float64 and out.shape == (5,)
    as_images = [f.permute(0, 3, 1, 2).float() / 127.5 - 1 for f in (ref, test)]
    assert torch.allclose(out, lpips_model(*as_images).double(), rtol=1e-6, atol=0)
    assert torch.equal(lpips_per_frame(lpips_model, ref, ref.clone()), torch.zeros(5, dtype=torch.float64))
    with pytest.raises(ValueError, match="RGB"):
        lpips_per_frame(lpips_model, ref[..., :1], test[..., :1])


def test_find_lpips_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VTOK_LPIPS_WEIGHTS", raising=False)
    assert find_lpips_weights() is None
    monkeypatch.setenv("VTOK_LPIPS_WEIGHTS", str(tmp_path))
    with pytest.raises(ValueError, match="lacks a VGG16 file .* and vgg.pth"):
        find_lpips_weights()
    (tmp_path / "vgg.pth").write_bytes(b"")
    with pytest.raises(ValueError, match="lacks a VGG16 file"):
        find_lpips_weights()
    (tmp_path / "vgg16-397923af.pth").write_bytes(b"")
    assert find_lpips_weights() == (tmp_path / "vgg16-397923af.pth", tmp_path / "vgg.pth")
    (tmp_path / "vgg16.pth").write_bytes(b"")
    assert find_lpips_weights() == (tmp_path / "vgg16.pth", tmp_path / "vgg.pth")
