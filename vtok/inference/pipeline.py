"""Videos and images of any length and size through a tokenizer: resize, pad, window, tile, crop back.

Frames stream in as uint8 RGB arrays and out the same way, one at a time, so memory is bounded by the
temporal window (and the spatial tile), never by the video's length. Spatial padding is centred zeros
up to the model's spatial compression (the extra pixel at the bottom/right, as NVIDIA pads); time is
padded at the end only, by repeating the last frame, which a causal model cannot see from earlier frames.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..io.image import resize_short_side
from ..metrics.psnr import to_uint8
from .engine import TokenizerEngine
from .tiles import Tiling, run_tiled
from .windows import TemporalWindows, stream_windows

CHUNK_FRAMES = 8


@dataclass(frozen=True)
class FrameLayout:
    """A frame's size as fed to the model and the zeros around it that make it a valid size."""

    height: int
    width: int
    padding: tuple[int, int, int, int]  # top, bottom, left, right

    @classmethod
    def fit(cls, height: int, width: int, multiple: int) -> FrameLayout:
        pad_h, pad_w = -height % multiple, -width % multiple
        return cls(height, width, (pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2))

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom, left, right = self.padding
        return F.pad(x, (left, right, top, bottom)) if any(self.padding) else x

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        top, _, left, _ = self.padding
        return x[..., top : top + self.height, left : left + self.width]


def to_model_input(frames: np.ndarray) -> torch.Tensor:
    """uint8 `[T,H,W,3]` -> float32 `[1,3,T,H,W]` in [-1,1] (NVIDIA's x/255*2-1)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).unsqueeze(0)
    return x.float() / 127.5 - 1.0


def to_frames(x: torch.Tensor) -> np.ndarray:
    """`[1,3,T,H,W]` in about [-1,1] -> uint8 `[T,H,W,3]` (clamped and rounded as NVIDIA does)."""
    return to_uint8(x[0]).permute(1, 2, 3, 0).cpu().numpy()


def _pad_time(x: torch.Tensor, tc: int) -> torch.Tensor:
    """Repeat the last frame until T = 1 + k * tc."""
    extra = -(x.shape[2] - 1) % tc
    return torch.cat([x, x[:, :, -1:].expand(-1, -1, extra, -1, -1)], 2) if extra else x


class Pipeline:
    """How one tokenizer processes media: window and tile settings, optional short-side resize."""

    def __init__(
        self,
        engine: TokenizerEngine,
        *,
        temporal_window: int | None = None,
        temporal_overlap: int | None = None,
        tile: tuple[int, int] | None = None,
        tile_overlap: int | None = None,
        short_size: int | None = None,
    ) -> None:
        self.engine = engine
        self.windows = (
            TemporalWindows.resolve(engine.tc, temporal_window, temporal_overlap) if engine.is_video else None
        )
        self.tiling = Tiling.resolve(engine.sc, tile, tile_overlap)
        self.short_size = short_size
        self.token_dim = 1 if engine.is_discrete else 2  # time axis of indices [B,t,h,w] / latents [B,C,t,h,w]

    # ----- frames in and out
    def prepare(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Frames as the model sees them (before padding): resized when `short_size` is set."""
        first_shape = None
        for frame in frames:
            if self.short_size:
                frame = resize_short_side(frame, self.short_size)
            if first_shape is None:
                first_shape = frame.shape
            elif frame.shape != first_shape:
                raise ValueError(f"frame size changed mid-video from {first_shape[:2]} to {frame.shape[:2]}")
            yield frame

    def _chunks(self, frames: Iterator[np.ndarray], layout: FrameLayout, counter: list[int]) -> Iterator[torch.Tensor]:
        while batch := list(itertools.islice(frames, CHUNK_FRAMES)):
            counter[0] += len(batch)
            yield layout.pad(to_model_input(np.stack(batch)).to(self.engine.device))

    def _start(self, frames: Iterable[np.ndarray]) -> tuple[FrameLayout, Iterator[np.ndarray]]:
        prepared = self.prepare(frames)
        first = next(prepared, None)
        if first is None:
            raise ValueError("no frames to process")
        layout = FrameLayout.fit(first.shape[0], first.shape[1], self.engine.sc)
        return layout, itertools.chain([first], prepared)

    def _emit(self, outputs: Iterable[torch.Tensor], layout: FrameLayout, counter: list[int]) -> Iterator[np.ndarray]:
        emitted = 0
        for chunk in outputs:
            for frame in to_frames(layout.crop(chunk)):
                if emitted >= counter[0]:
                    return
                emitted += 1
                yield frame

    # ----- window functions
    def _encode_window(self, x: torch.Tensor) -> torch.Tensor:
        blend = "nearest" if self.engine.is_discrete else "fade"
        x = _pad_time(x, self.engine.tc) if x.ndim == 5 else x
        return run_tiled(self.engine.encode, x, self.tiling, 1 / self.engine.sc, blend)

    def _decode_window(self, tokens: torch.Tensor) -> torch.Tensor:
        tiling = self.tiling.scaled(self.engine.sc, divide=True) if self.tiling else None
        return run_tiled(self.engine.decode, tokens, tiling, self.engine.sc, "fade")

    def _autoencode_window(self, x: torch.Tensor) -> torch.Tensor:
        y = run_tiled(self.engine.autoencode, _pad_time(x, self.engine.tc), self.tiling, 1, "fade")
        return y[:, :, : x.shape[2]]

    # ----- videos
    def _video_only(self) -> TemporalWindows:
        if self.windows is None:
            raise ValueError(f"{self.engine.name} is an image tokenizer; give it images (--image_pattern)")
        return self.windows

    def encode(self, frames: Iterable[np.ndarray]) -> tuple[torch.Tensor, FrameLayout, int]:
        """Tokens of a whole video (latent `[C,t,h,w]` or indices `[t,h,w]`), its layout and frame count."""
        windows = self._video_only()
        layout, frames = self._start(frames)
        counter = [0]
        chunks = stream_windows(
            self._chunks(frames, layout, counter), self._encode_window, windows.encode_plan(), 2, self.token_dim
        )
        tokens = torch.cat(list(chunks), self.token_dim)
        return tokens[0].cpu(), layout, counter[0]

    def decode(self, tokens: torch.Tensor, layout: FrameLayout, num_frames: int) -> Iterator[np.ndarray]:
        """Frames decoded from `tokens` (as `encode` returns them), cropped to `layout` and `num_frames`."""
        windows = self._video_only()
        batch = tokens.unsqueeze(0).to(self.engine.device)
        chunks = batch.split(windows.decode_plan().step_in, dim=self.token_dim)
        outputs = stream_windows(chunks, self._decode_window, windows.decode_plan(), self.token_dim, 2)
        return self._emit(outputs, layout, [num_frames])

    def autoencode(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Reconstructed frames, streamed; equal to `decode(encode(frames))` with the same settings."""
        windows = self._video_only()
        layout, frames = self._start(frames)
        counter = [0]
        chunks = self._chunks(frames, layout, counter)
        if self.engine.can_encode and self.engine.can_decode:
            tokens = stream_windows(chunks, self._encode_window, windows.encode_plan(), 2, self.token_dim)
            outputs = stream_windows(tokens, self._decode_window, windows.decode_plan(), self.token_dim, 2)
        else:
            outputs = stream_windows(chunks, self._autoencode_window, windows.autoencode_plan(), 2, 2)
        return self._emit(outputs, layout, counter)

    # ----- images
    def _image_input(self, image: np.ndarray) -> tuple[torch.Tensor, FrameLayout]:
        image = next(self.prepare([image]))
        layout = FrameLayout.fit(image.shape[0], image.shape[1], self.engine.sc)
        x = layout.pad(to_model_input(image[None]).to(self.engine.device))
        return (x if self.engine.is_video else x[:, :, 0]), layout

    def encode_image(self, image: np.ndarray) -> tuple[torch.Tensor, FrameLayout]:
        """Tokens of one image (`[C,h,w]`/`[h,w]`; `[C,1,h,w]`/`[1,h,w]` from a video model) and its layout."""
        x, layout = self._image_input(image)
        return self._encode_window(x)[0].cpu(), layout

    def decode_image(self, tokens: torch.Tensor, layout: FrameLayout) -> np.ndarray:
        """The image decoded from `encode_image`'s tokens."""
        y = self._decode_window(tokens.unsqueeze(0).to(self.engine.device))
        return to_frames(layout.crop(y if self.engine.is_video else y[:, :, None]))[0]

    def autoencode_image(self, image: np.ndarray) -> np.ndarray:
        """One image through an image model, or through a video model as a 1-frame video."""
        if self.engine.can_encode and self.engine.can_decode:
            return self.decode_image(*self.encode_image(image))
        x, layout = self._image_input(image)
        y = run_tiled(self.engine.autoencode, x, self.tiling, 1, "fade")
        return to_frames(layout.crop(y if self.engine.is_video else y[:, :, None]))[0]
