"""LPIPS (VGG variant, v0.1): the `lpips` package's `LPIPS(net='vgg')` distance, without downloads.

Pipeline: [-1,1] input -> ScalingLayer -> VGG16 relu taps -> unit-normalize each pixel's channel vector
-> squared difference -> 1x1 linear head per tap (no bias) -> spatial mean -> sum over the five taps.
Weights come from two local files: torchvision's VGG16 and lpips' `weights/v0.1/vgg.pth` heads.
`find_lpips_weights` looks for them in `$VTOK_LPIPS_WEIGHTS`, so callers report LPIPS only when present.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..checkpoint.auxiliary import check_state_dict, load_vgg16_features
from ..checkpoint.reader import read_state_dict
from ..networks.vgg import TAP_CHANNELS, VGG16Features
from .psnr import check_frame_pair

WEIGHTS_ENV = "VTOK_LPIPS_WEIGHTS"
VGG_FILES = ("vgg16.pth", "vgg16-397923af.pth")
LIN_FILE = "vgg.pth"
EPS = 1e-10


class ScalingLayer(nn.Module):
    """(x - shift) / scale on [-1,1] RGB: lpips' stand-in for ImageNet normalization."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale


class NetLinLayer(nn.Module):
    """A 1x1 conv C -> 1 without bias, as `model.1` so keys match lpips' files (`model.0` was Dropout,
    an identity here so a parent's .train() cannot make the metric random)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def normalize_channels(x: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Each pixel's feature vector divided by its L2 norm over channels (plus eps)."""
    return x / (x.square().sum(dim=1, keepdim=True).sqrt() + eps)


class LPIPS(nn.Module):
    """Frozen LPIPS-VGG distance: two [N,3,H,W] images in [-1,1] -> [N]."""

    def __init__(self, vgg: VGG16Features | None = None) -> None:
        super().__init__()
        self.scaling_layer = ScalingLayer()
        self.net = vgg if vgg is not None else VGG16Features()
        for k, channels in enumerate(TAP_CHANNELS):
            self.add_module(f"lin{k}", NetLinLayer(channels))
        self.requires_grad_(False)
        self.eval()

    def lins(self) -> list[NetLinLayer]:
        """The five heads, lin0..lin4, in tap order."""
        return [getattr(self, f"lin{k}") for k in range(len(TAP_CHANNELS))]

    def lin_state_dict(self) -> dict[str, torch.Tensor]:
        """The heads' weights under lpips' key names (`lin{k}.model.1.weight`), as in its vgg.pth."""
        return {k: v for k, v in self.state_dict().items() if k.startswith("lin")}

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Distance per image pair: sum over taps of the spatial mean of the weighted squared difference."""
        taps_x = self.net(self.scaling_layer(x))
        taps_y = self.net(self.scaling_layer(y))
        total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for lin, fx, fy in zip(self.lins(), taps_x, taps_y):
            diff = (normalize_channels(fx) - normalize_channels(fy)).square()
            total = total + lin(diff).mean(dim=(1, 2, 3))
        return total

    @classmethod
    def from_files(cls, vgg_path: str | Path, lin_path: str | Path) -> LPIPS:
        """Load torchvision's VGG16 file and lpips' linear-head file, both strictly (ValueError naming the file)."""
        model = cls(load_vgg16_features(vgg_path))
        lin_state = read_state_dict(lin_path)
        check_state_dict(lin_path, lin_state, model.lin_state_dict(), "LPIPS-VGG linear heads (lpips' vgg.pth)")
        model.load_state_dict(lin_state, strict=False)  # exactly the head keys, checked above
        return model


def find_lpips_weights(folder: str | Path | None = None) -> tuple[Path, Path] | None:
    """(vgg16 file, lpips vgg.pth) in `folder` (default: $VTOK_LPIPS_WEIGHTS), or None when no folder is set.

    A folder that is set but lacks either file raises ValueError naming what is missing, so a typo does
    not silently turn LPIPS off.
    """
    folder = folder or os.environ.get(WEIGHTS_ENV)
    if not folder:
        return None
    vgg = next((Path(folder) / name for name in VGG_FILES if (Path(folder) / name).is_file()), None)
    lin = Path(folder) / LIN_FILE
    missing = ([f"a VGG16 file ({' or '.join(VGG_FILES)})"] if vgg is None else []) + (
        [LIN_FILE] if not lin.is_file() else []
    )
    if missing:
        raise ValueError(f"LPIPS weights folder {folder} lacks {' and '.join(missing)}")
    return vgg, lin


@torch.no_grad()
def lpips_per_frame(model: LPIPS, reference: torch.Tensor, test: torch.Tensor, chunk_frames: int = 4) -> torch.Tensor:
    """uint8 RGB frames [T,H,W,3] -> float64 [T] on the frames' device, `chunk_frames` at a time.

    Frames become [-1,1] (x/127.5 - 1, as lpips' im2tensor) in the model's device and dtype.
    """
    check_frame_pair(reference, test)
    if reference.shape[-1] != 3:
        raise ValueError(f"LPIPS needs RGB frames, got {reference.shape[-1]} channel(s)")
    param = next(model.parameters())
    out = []
    for i in range(0, reference.shape[0], chunk_frames):
        x, y = (
            f[i : i + chunk_frames].to(param.device).permute(0, 3, 1, 2).to(param.dtype) / 127.5 - 1
            for f in (reference, test)
        )
        out.append(model(x, y).double().to(reference.device))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64, device=reference.device)
