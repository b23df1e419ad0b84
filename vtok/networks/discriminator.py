"""PatchGAN discriminators for the adversarial post-training stage: per frame (`patch2d`), per clip (`patch3d`),
or both. Inputs are videos [B,3,T,H,W] in [-1,1]; outputs are unnormalized logits, one per patch.

The layout is pix2pix's PatchGAN (as VQGAN, VidTok, Open-MAGVIT2 and Open-Sora use it): a stride-2 conv, then
`num_layers - 1` stride-2 convs doubling the width (capped at 8x), a stride-1 conv and a stride-1 conv to one
channel; LeakyReLU(0.2), 4x4 spatial kernels, N(0, 0.02) weights. Two deliberate differences:
- GroupNorm instead of BatchNorm: the logits of a sample do not depend on the rest of its batch, so real and
  fake clips can share one forward, train and eval mode agree, and DDP ranks need no SyncBatchNorm to match a
  single process. With `spectral_norm` every conv is spectrally normalized and the norm layers are dropped
  (SN-PatchGAN): a 1-Lipschitz conv followed by GroupNorm would no longer be.
- `patch3d` uses (3,4,4) kernels with time padding 1 and time stride 2 in its first conv only, so any clip
  length T >= 1 works (tokenizer clips are 1 + 4k or 1 + 8k frames; Open-Sora's 4x4x4 kernels run out of
  frames after three layers on short clips).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

KINDS = ("patch2d", "patch3d", "both")
SETTING_KEY = "loss.adversarial.discriminator"


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels // 4) or 1, channels)


class PatchDiscriminator(nn.Module):
    """One PatchGAN over frames (dims=2: [N,3,H,W]) or clips (dims=3: [B,3,T,H,W]) -> logits [N,1,h,w] / [B,1,t,h,w]."""

    def __init__(
        self, dims: int, channels: int = 64, num_layers: int = 3, spectral_norm: bool = False, in_channels: int = 3
    ) -> None:
        super().__init__()
        if dims not in (2, 3):
            raise ValueError(f"dims must be 2 or 3, got {dims}")
        if num_layers < 1 or channels < 1:
            raise ValueError(f"a discriminator needs num_layers >= 1 and channels >= 1, got {num_layers}, {channels}")
        self.dims = dims
        self.num_layers = num_layers
        widths = [channels * min(2**n, 8) for n in range(num_layers + 1)]
        layers: list[nn.Module] = []
        for n in range(num_layers + 2):
            last = n == num_layers + 1
            c_in = in_channels if n == 0 else widths[min(n - 1, num_layers)]
            c_out = 1 if last else widths[n]
            spatial_stride = 2 if n < num_layers else 1
            conv = self._conv(c_in, c_out, spatial_stride, time_stride=2 if n == 0 else 1)
            layers.append(_spectral_norm(conv) if spectral_norm else conv)
            if not last:
                if 0 < n and not spectral_norm:
                    layers.append(_group_norm(c_out))
                layers.append(nn.LeakyReLU(0.2))
        self.layers = nn.Sequential(*layers)

    def _conv(self, c_in: int, c_out: int, stride: int, time_stride: int) -> nn.Module:
        """A 4x4 (2D) or 3x4x4 (3D) conv with PatchGAN's init: weights N(0, 0.02), bias 0."""
        if self.dims == 2:
            conv = nn.Conv2d(c_in, c_out, 4, stride=stride, padding=1)
        else:
            conv = nn.Conv3d(c_in, c_out, (3, 4, 4), stride=(time_stride, stride, stride), padding=1)
        with torch.no_grad():
            nn.init.normal_(conv.weight, 0.0, 0.02)
            nn.init.zeros_(conv.bias)
        return conv

    @property
    def min_size(self) -> int:
        """The smallest H and W with at least one output patch: 2**num_layers * 3 (two stride-1 4x4 convs)."""
        return 2**self.num_layers * 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class VideoDiscriminator(nn.Module):
    """`patch2d` (frames, time folded into batch), `patch3d` (clips), or both; `forward` -> {name: logits}.

    patch2d logits come back as [B,1,T,h,w] (time unfolded again), patch3d's as [B,1,t,h,w].
    """

    def __init__(
        self, kind: str = "patch2d", channels: int = 64, num_layers: int = 3, spectral_norm: bool = False
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"{SETTING_KEY} must be one of {', '.join(KINDS)}, got {kind!r}")
        self.kind = kind
        if kind in ("patch2d", "both"):
            self.patch2d = PatchDiscriminator(2, channels, num_layers, spectral_norm)
        if kind in ("patch3d", "both"):
            self.patch3d = PatchDiscriminator(3, channels, num_layers, spectral_norm)

    def heads(self) -> Iterator[tuple[str, PatchDiscriminator]]:
        """(name, discriminator) pairs in a fixed order: patch2d first."""
        for name in ("patch2d", "patch3d"):
            if hasattr(self, name):
                yield name, getattr(self, name)

    @property
    def head_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.heads())

    def check_input(self, x: torch.Tensor) -> None:
        smallest = max(d.min_size for _, d in self.heads())
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"the discriminator takes videos [B,3,T,H,W], got {list(x.shape)}")
        if min(x.shape[-2:]) < smallest:
            raise ValueError(
                f"the discriminator needs frames of at least {smallest}x{smallest} pixels, got "
                f"{x.shape[-2]}x{x.shape[-1]}"
            )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.check_input(x)
        out = {}
        for name, head in self.heads():
            if name == "patch2d":
                b, c, t, h, w = x.shape
                logits = head(x.transpose(1, 2).reshape(b * t, c, h, w))
                out[name] = logits.reshape(b, t, *logits.shape[1:]).transpose(1, 2)
            else:
                out[name] = head(x)
        return out


def build_discriminator(
    kind: str = "patch2d", spectral_norm: bool = False, channels: int = 64, num_layers: int = 3
) -> VideoDiscriminator:
    """The discriminator `loss.adversarial.discriminator` names (ValueError naming the key otherwise)."""
    return VideoDiscriminator(kind, channels, num_layers, spectral_norm)
