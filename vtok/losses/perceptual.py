"""NVIDIA's perceptual ("lpips") and Gram training losses on frozen VGG16 features (docs/design.md#losses).

Not standard LPIPS: per frame (time folded into batch), the [-1,1] pixels go through lpips' ScalingLayer
and torchvision's VGG16; the loss is `sum_k w_k * mean_{c,h,w} |phi_k(x) - phi_k(x_hat)|` over the relu1_2 ..
relu5_3 taps, with raw (not unit-normalized) features and no learned heads, averaged over the B*T frames and
times the scheduled weight. The optional Gram term compares, per video, the Gram matrices of each tap over
all its frames (`F F^T / (T*h*w)`), squared and averaged, with the same layer weights.

VGG runs in bf16 by default (NVIDIA runs it in bf16 too); every sum and mean is taken in float32. The
features of `x` are computed without autograd: only `x_hat` gets gradients. Two ways to save memory:
- `checkpoint_activations` (NVIDIA's option): each VGG slice is recomputed in backward; the slices' inputs
  and the taps' differences of every frame are still kept for it.
- `chunk_frames=N`: frames go through VGG N at a time, each chunk under activation checkpointing, so only
  the input frames are kept and backward recomputes one chunk at a time (x's features included): activation
  memory is bounded by one chunk whatever the clip's length, for about one more VGG pass over x and x_hat.
  Per-slice checkpointing is then not used inside the chunks.
A `loss_mask` weights each tap's difference, resized to the tap by nearest neighbour, as NVIDIA's code does.

Weights are read from a local torchvision `vgg16` file, found by `find_vgg16_weights`; nothing is downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..metrics.lpips import ScalingLayer
from ..networks.vgg import TAP_INDICES, VGG16Features
from .config import LAYER_WEIGHTS
from .schedules import WeightSchedule

WEIGHTS_ENV = "VTOK_VGG16_WEIGHTS"
TORCHVISION_FILE = "vgg16-397923af.pth"
VGG_FILES = ("vgg16.pth", TORCHVISION_FILE)
TORCHVISION_URL = f"https://download.pytorch.org/models/{TORCHVISION_FILE}"
# features[a:b] of each slice, ending at its relu tap: [0:4], [4:9], [9:16], [16:23], [23:30].
SLICE_BOUNDS = tuple(zip((0,) + tuple(i + 1 for i in TAP_INDICES[:-1]), tuple(i + 1 for i in TAP_INDICES)))


def hub_vgg16_path() -> Path:
    """Where torchvision caches vgg16: `$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth` (torch.hub.get_dir)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILE


def _resolve(location: str, origin: str) -> Path:
    """A VGG16 file given as a file or a folder holding one of VGG_FILES, or FileNotFoundError naming it."""
    path = Path(location).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        for name in VGG_FILES:
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"{origin}: folder {path} holds no VGG16 file ({' or '.join(VGG_FILES)})")
    raise FileNotFoundError(f"{origin}: no VGG16 weights file at {path}")


def find_vgg16_weights(path: str | os.PathLike | None = None) -> Path | None:
    """torchvision's VGG16 weights: `path`, else `$VTOK_VGG16_WEIGHTS`, else the torch hub cache; None if absent.

    `path` and the variable may name a file or a folder holding `vgg16.pth` or `vgg16-397923af.pth`. When
    either is set but names nothing usable, FileNotFoundError says so: a typo must not turn the term off.
    """
    if path:
        return _resolve(str(path), "loss.perceptual.vgg_weights")
    if os.environ.get(WEIGHTS_ENV):
        return _resolve(os.environ[WEIGHTS_ENV], f"${WEIGHTS_ENV}")
    hub = hub_vgg16_path()
    return hub if hub.is_file() else None


def missing_weights_hint() -> str:
    """One line: where VGG16 weights were looked for and how to provide them."""
    return (
        f"no VGG16 weights in loss.perceptual.vgg_weights, ${WEIGHTS_ENV} or {hub_vgg16_path()}; put "
        f"torchvision's {TORCHVISION_FILE} ({TORCHVISION_URL}) there, or set loss.perceptual.vgg_weights=PATH "
        f"or ${WEIGHTS_ENV}=PATH"
    )


def to_frames(video: torch.Tensor) -> torch.Tensor:
    """[B,C,T,H,W] -> [B*T,C,H,W] (b-major, as NVIDIA's time2batch); [B,C,H,W] is returned as is."""
    if video.ndim == 4:
        return video
    b, c, t, h, w = video.shape
    return video.transpose(1, 2).reshape(b * t, c, h, w)


class PerceptualLoss(nn.Module):
    """`{"lpips": weighted scalar, "gram": weighted scalar (when enabled)}` for x, x_hat [B,3,T,H,W] in [-1,1]."""

    def __init__(
        self,
        vgg: VGG16Features,
        lpips_schedule: WeightSchedule | None = None,
        layer_weights: Sequence[float] = LAYER_WEIGHTS,
        gram_schedule: WeightSchedule | None = None,
        checkpoint_activations: bool = False,
        chunk_frames: int = 0,
        dtype: torch.dtype = torch.bfloat16,
    ) -> None:
        super().__init__()
        if len(layer_weights) != len(TAP_INDICES):
            raise ValueError(f"layer_weights needs {len(TAP_INDICES)} weights, got {len(layer_weights)}")
        if chunk_frames < 0:
            raise ValueError(f"chunk_frames must be 0 (all frames) or more, got {chunk_frames}")
        self.scaling = ScalingLayer()
        self.vgg = vgg.to(dtype).requires_grad_(False).eval()
        self.lpips_schedule = lpips_schedule or WeightSchedule.constant(0.1)
        self.gram_schedule = gram_schedule
        self.layer_weights = tuple(float(w) for w in layer_weights)
        self.checkpoint_activations = checkpoint_activations
        self.chunk_frames = chunk_frames

    def train(self, mode: bool = True) -> PerceptualLoss:
        """VGG stays in eval mode whatever the parent's mode (it has no dropout or norm, but stays frozen)."""
        super().train(mode)
        self.vgg.eval()
        return self

    def features(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """[N,3,H,W] in [-1,1] -> the five taps in VGG's dtype, slices checkpointed when asked (and not chunking)."""
        dtype = next(self.vgg.parameters()).dtype
        h = self.scaling(frames.to(self.scaling.shift.dtype)).to(dtype)
        use_checkpoint = (
            self.checkpoint_activations and not self.chunk_frames and torch.is_grad_enabled() and h.requires_grad
        )
        taps = []
        for start, stop in SLICE_BOUNDS:
            block = self.vgg.features[start:stop]
            h = checkpoint(block, h, use_reentrant=False) if use_checkpoint else block(h)
            taps.append(h)
        return taps

    def forward(
        self, x: torch.Tensor, x_hat: torch.Tensor, iteration: int, loss_mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        if x.shape != x_hat.shape or x.ndim not in (4, 5) or x.shape[1] != 3:
            raise ValueError(
                f"the perceptual loss needs two [B,3,T,H,W] (or [B,3,H,W]) tensors of one shape, "
                f"got {list(x.shape)} and {list(x_hat.shape)}"
            )
        lpips_weight = self.lpips_schedule(iteration)
        gram_weight = self.gram_schedule(iteration) if self.gram_schedule is not None else 0.0
        zero = x_hat.new_zeros((), dtype=torch.float32)
        out = {"lpips": zero} | ({"gram": zero} if self.gram_schedule is not None else {})
        if lpips_weight == 0.0 and gram_weight == 0.0:
            return out
        lpips_sum, grams = self._accumulate(x, x_hat, loss_mask, lpips_weight != 0.0, gram_weight != 0.0)
        if lpips_weight != 0.0:
            out["lpips"] = lpips_weight * lpips_sum / to_frames(x).shape[0]
        if gram_weight != 0.0:
            out["gram"] = gram_weight * self._gram_loss(*grams)
        return out

    def _accumulate(
        self, x: torch.Tensor, x_hat: torch.Tensor, loss_mask: torch.Tensor | None, lpips: bool, gram: bool
    ) -> tuple[torch.Tensor, tuple[list, list, list]]:
        """Run VGG chunk by chunk: the weighted sum over frames of the lpips term, and per-video Gram sums."""
        batch, frames_per_video = x.shape[0], (x.shape[2] if x.ndim == 5 else 1)
        frames_x, frames_y = to_frames(x.detach()), to_frames(x_hat)
        mask = self._mask_frames(loss_mask, x) if loss_mask is not None else None
        total = frames_x.shape[0]
        chunk = self.chunk_frames or total
        recompute = bool(self.chunk_frames) and torch.is_grad_enabled() and frames_y.requires_grad
        lpips_sum = x_hat.new_zeros((), dtype=torch.float32)
        grams_x: list = [0] * len(TAP_INDICES)
        grams_y: list = [0] * len(TAP_INDICES)
        norms: list = [0] * len(TAP_INDICES)
        for start in range(0, total, chunk):
            stop = min(start + chunk, total)
            args = (
                frames_x[start:stop],
                frames_y[start:stop],
                None if mask is None else mask[start:stop],
                torch.arange(start, stop, device=x.device) // frames_per_video,
                batch,
                lpips,
                gram,
            )
            part = checkpoint(self._chunk_terms, *args, use_reentrant=False) if recompute else self._chunk_terms(*args)
            lpips_sum = lpips_sum + part[0]
            grams_x = [a + b for a, b in zip(grams_x, part[1])]
            grams_y = [a + b for a, b in zip(grams_y, part[2])]
            norms = [frames_per_video * n for n in part[3]]
        return lpips_sum, (grams_x, grams_y, norms)

    def _chunk_terms(
        self,
        frames_x: torch.Tensor,
        frames_y: torch.Tensor,
        mask: torch.Tensor | None,
        video_index: torch.Tensor,
        batch: int,
        lpips: bool,
        gram: bool,
    ) -> tuple:
        """One chunk of frames: (weighted lpips sum, per-video Gram sums of x and x_hat per tap, taps' h*w)."""
        with torch.no_grad():
            taps_x = self.features(frames_x)
        taps_y = self.features(frames_y)
        lpips_sum = frames_y.new_zeros((), dtype=torch.float32)
        grams_x, grams_y, sizes = [], [], []
        for k, (fx, fy) in enumerate(zip(taps_x, taps_y)):
            tap_mask = None if mask is None else F.interpolate(mask, size=fx.shape[-2:]).to(fx.dtype)
            if lpips:
                diff = (fx - fy).abs() if tap_mask is None else (fx - fy).abs() * tap_mask
                lpips_sum = lpips_sum + self.layer_weights[k] * diff.mean(dim=(1, 2, 3), dtype=torch.float32).sum()
            grams_x.append(video_grams(fx, tap_mask, video_index, batch) if gram else 0)
            grams_y.append(video_grams(fy, tap_mask, video_index, batch) if gram else 0)
            sizes.append(fx.shape[-2] * fx.shape[-1])
        return lpips_sum, grams_x, grams_y, sizes

    @staticmethod
    def _mask_frames(loss_mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """A mask broadcastable to x -> its first channel per frame, [B*T,1,H,W] (NVIDIA's `weights[:, :1]`)."""
        if loss_mask.ndim > x.ndim:
            raise ValueError(f"loss_mask {list(loss_mask.shape)} does not broadcast to the input {list(x.shape)}")
        loss_mask = loss_mask.reshape((1,) * (x.ndim - loss_mask.ndim) + tuple(loss_mask.shape))
        return to_frames(loss_mask[:, :1].expand(x.shape[0], 1, *x.shape[2:])).float()

    def _gram_loss(self, grams_x: list, grams_y: list, norms: list) -> torch.Tensor:
        """sum_k w_k * mean_{c,c'} (G_k(x) - G_k(x_hat))^2, averaged over videos, with G = F F^T / (T*h*w)."""
        per_video = sum(
            w * ((gx - gy) / n).square().mean(dim=(1, 2))
            for w, gx, gy, n in zip(self.layer_weights, grams_x, grams_y, norms)
        )
        return per_video.mean()


def video_grams(
    tap: torch.Tensor, tap_mask: torch.Tensor | None, video_index: torch.Tensor, batch: int
) -> torch.Tensor:
    """Per-video sums over a chunk's frames of F F^T in float32: [B,C,C], so chunks add up."""
    features = (tap if tap_mask is None else tap * tap_mask).float().flatten(2)
    grams = features @ features.transpose(1, 2)
    return grams.new_zeros(batch, *grams.shape[1:]).index_add(0, video_index, grams)
