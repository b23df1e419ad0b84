"""Long videos in temporal windows (`--mode jit`, approximate): memory bounded by the window, no seam where they meet.

TorchScript graphs cannot carry state from one call to the next, so they cannot stream exactly as vtok's
network does (streams.py); this is their way to run a video of any length.

NVIDIA's `video_cli` cuts a video into independent 17-frame windows, so every window restarts the
causal model's first-frame encoding and a seam shows every 17 frames (docs/design.md#windows). vtok
instead starts each window `overlap` frames (a multiple of the temporal compression `tc`) before the end
of the previous one, on the latent grid of a whole-clip pass:
- encoding keeps, from every window after the first, only the latents past its warm-up (its first,
  image-like latent and the `overlap / tc` context latents), so tokens are aligned with whole-clip ones;
- decoding re-decodes the same context and cross-fades the `1 + overlap` shared frames linearly, from
  the previous window to the new one, so no frame jumps.
The first window is exactly what a whole-clip pass gives for those frames (the model is causal), and a
video no longer than one window is processed whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch

DEFAULT_WINDOW = 49


@dataclass(frozen=True)
class WindowPlan:
    """Window i reads inputs [i*step_in, i*step_in + size_in) and writes outputs from i*step_out."""

    size_in: int
    step_in: int
    step_out: int
    blend: str  # "drop": discard outputs already written; "fade": cross-fade them


@dataclass(frozen=True)
class TemporalWindows:
    """Window length and overlap in frames for a model with temporal compression `tc`."""

    tc: int
    frames: int
    overlap: int

    @classmethod
    def resolve(cls, tc: int, frames: int | None = None, overlap: int | None = None) -> TemporalWindows:
        """Validate user settings (defaults: 49 frames, 2*tc overlap, capped to fit), with messages that say
        which values would work."""
        frames = DEFAULT_WINDOW if frames is None else frames
        if frames < 1 + tc or (frames - 1) % tc:
            valid = ", ".join(str(1 + k * tc) for k in (1, 2, 3, 4, 6, 15))
            raise ValueError(
                f"--temporal_window must be 1 + a multiple of {tc} and at least {1 + tc} (e.g. {valid}), got {frames}"
            )
        latents = (frames - 1) // tc
        max_overlap = (latents - 1) * tc
        if overlap is None:
            overlap = min(2 * tc, max_overlap)
        if overlap < 0 or overlap % tc or overlap > max_overlap:
            raise ValueError(
                f"--temporal_overlap must be a multiple of {tc} between 0 and {max_overlap} for a "
                f"{frames}-frame window, got {overlap}"
            )
        return cls(tc, frames, overlap)

    @property
    def step_latents(self) -> int:
        return (self.frames - 1 - self.overlap) // self.tc

    def encode_plan(self) -> WindowPlan:
        return WindowPlan(self.frames, self.step_latents * self.tc, self.step_latents, "drop")

    def decode_plan(self) -> WindowPlan:
        return WindowPlan(1 + (self.frames - 1) // self.tc, self.step_latents, self.step_latents * self.tc, "fade")

    def autoencode_plan(self) -> WindowPlan:
        step = self.step_latents * self.tc
        return WindowPlan(self.frames, step, step, "fade")


def _merge(
    pending: torch.Tensor | None, pending_start: int, y: torch.Tensor, start: int, dim: int, blend: str
) -> torch.Tensor:
    """Add window output `y` (global position `start`) to the outputs not yet emitted."""
    if pending is None:
        return y
    shared = pending_start + pending.shape[dim] - start
    if shared <= 0:
        return torch.cat([pending, y], dim)
    head, new = y.narrow(dim, 0, shared), y.narrow(dim, shared, y.shape[dim] - shared)
    if blend == "fade":
        old = pending.narrow(dim, pending.shape[dim] - shared, shared)
        shape = [1] * y.ndim
        shape[dim] = shared
        weight = (torch.arange(shared, device=y.device, dtype=torch.float32) / shared).view(shape)
        faded = (old.float() * (1 - weight) + head.float() * weight).to(y.dtype)
        pending = torch.cat([pending.narrow(dim, 0, pending.shape[dim] - shared), faded], dim)
    return torch.cat([pending, new], dim)


def stream_windows(
    chunks: Iterable[torch.Tensor],
    fn: Callable[[torch.Tensor], torch.Tensor],
    plan: WindowPlan,
    in_dim: int,
    out_dim: int,
) -> Iterator[torch.Tensor]:
    """Apply `fn` to overlapping windows of a stream of chunks (concatenated along `in_dim`), yielding the
    merged outputs along `out_dim` as soon as no later window can change them."""
    source = iter(chunks)
    buffer: torch.Tensor | None = None
    buffer_start = 0
    pending: torch.Tensor | None = None
    pending_start = 0
    exhausted = False
    last_end = 0
    index = 0
    while True:
        start = index * plan.step_in
        while not exhausted and (buffer is None or buffer_start + buffer.shape[in_dim] < start + plan.size_in):
            chunk = next(source, None)
            if chunk is None:
                exhausted = True
            else:
                buffer = chunk if buffer is None else torch.cat([buffer, chunk], in_dim)
        available = buffer_start + (0 if buffer is None else buffer.shape[in_dim])
        end = min(start + plan.size_in, available)
        if end <= max(start, last_end if index else 0):
            break
        assert buffer is not None
        y = fn(buffer.narrow(in_dim, start - buffer_start, end - start))
        pending = _merge(pending, pending_start, y, index * plan.step_out, out_dim, plan.blend)
        last_end = end
        next_start = (index + 1) * plan.step_out
        final = pending.shape[out_dim]
        if plan.blend == "fade":
            final = min(final, max(0, next_start - pending_start))
        if final:
            yield pending.narrow(out_dim, 0, final)
            pending = pending.narrow(out_dim, final, pending.shape[out_dim] - final)
            pending_start += final
        index += 1
        if exhausted and end == available:
            break
        drop = index * plan.step_in - buffer_start
        buffer = buffer.narrow(in_dim, drop, buffer.shape[in_dim] - drop)
        buffer_start += drop
    if pending is not None and pending.shape[out_dim]:
        yield pending
