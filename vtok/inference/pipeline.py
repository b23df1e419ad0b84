"""Videos and images of any length and size through a tokenizer: resize, pad, chunk or window, tile, crop back.

Frames stream in as uint8 RGB arrays and out the same way, so memory is bounded by the chunk (and the spatial
tile), never by the video's length. Three ways to run a video (`processing`, recorded in token files):

- "stream" (torch engine, the default there): exact chunked inference (streams.py); the output is one pass
  over the whole video whatever `temporal_window` is, up to the attention horizon.
- "windows" (jit engine, the default there): overlapping windows that restart the model (windows.py);
  approximate, and the result depends on the window.
- "nvidia_compat": NVIDIA's `video_cli`: 17-frame windows that restart the model, black to multiples of 16,
  edge frames in time (nvidia_windows.py).

Outside nvidia_compat, frames are padded to the model's spatial compression with PAD_FILL, centred (the
extra pixel at the bottom/right, as NVIDIA pads), and time at the end only, by repeating the last frame,
which a causal model cannot see from earlier frames.
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
from ..networks.video_streams import HorizonSetting
from .engine import TokenizerEngine
from .nvidia_windows import (
    BLACK,
    NVIDIA_SPATIAL_ALIGN,
    NVIDIA_TEMPORAL_WINDOW,
    crop_window,
    nvidia_windows,
    pad_window,
)
from .streams import TileStreams, frame_chunk_sizes, latent_chunk_sizes, pad_chunk_time
from .tiles import Tiling, run_tiled, tile_count
from .windows import TemporalWindows, stream_windows

CHUNK_FRAMES = 8
PROCESSING = ("stream", "windows", "nvidia_compat")
PAD_FILLS = ("zero", "black", "replicate", "reflect")
PAD_FILL = "zero"  # vtok's spatial padding, chosen by measurement (docs/inference.md#padding)


@dataclass(frozen=True)
class FrameLayout:
    """A frame's size as fed to the model and the padding around it that makes it a valid size."""

    height: int
    width: int
    padding: tuple[int, int, int, int]  # top, bottom, left, right
    fill: str = PAD_FILL  # one of PAD_FILLS: 0 (mid-grey), -1 (black), edge pixels, mirrored pixels

    @classmethod
    def fit(cls, height: int, width: int, multiple: int, fill: str = PAD_FILL) -> FrameLayout:
        pad_h, pad_w = -height % multiple, -width % multiple
        return cls(height, width, (pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2), fill)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Pad a [B,C,T,H,W] tensor in model space."""
        top, bottom, left, right = self.padding
        if not any(self.padding):
            return x
        if self.fill in ("zero", "black"):
            return F.pad(x, (left, right, top, bottom), value=0.0 if self.fill == "zero" else BLACK)
        if self.fill == "reflect" and (max(top, bottom) >= self.height or max(left, right) >= self.width):
            return F.pad(x, (left, right, top, bottom, 0, 0), mode="replicate")  # too small to mirror
        return F.pad(x, (left, right, top, bottom, 0, 0), mode=self.fill)

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


def _resolve_processing(
    engine: TokenizerEngine,
    processing: str | None,
    temporal_overlap: int | None,
    tile: tuple[int, int] | None,
    attention_horizon: HorizonSetting,
) -> str:
    """The processing a pipeline runs (default: exact streams where the engine can), with one-line refusals of
    settings that do not apply to it."""
    if processing is None:
        processing = "stream" if engine.tokenizer is not None else "windows"
    if processing not in PROCESSING:
        raise ValueError(f"processing must be one of {PROCESSING}, got {processing!r}")
    if processing == "stream" and engine.tokenizer is None:
        raise ValueError(
            "exact streaming needs vtok's network (--mode torch); TorchScript graphs (--mode jit) cannot carry "
            "state from one chunk to the next and run in approximate overlapping windows"
        )
    if temporal_overlap is not None and processing != "windows":
        why = "streams exactly" if processing == "stream" else "uses NVIDIA's windows, which do not overlap"
        raise ValueError(
            f"--temporal_overlap sets the approximate overlapping windows of --mode jit; this run {why}, "
            "so drop --temporal_overlap"
        )
    if tile is not None and processing == "nvidia_compat":
        raise ValueError("--nvidia_compat reproduces NVIDIA's video_cli, which has no spatial tiles; drop --tile")
    if attention_horizon != "auto" and processing != "stream":
        raise ValueError(
            "--attention_horizon applies to exact streaming (--mode torch without --nvidia_compat); drop it"
        )
    return processing


class Pipeline:
    """How one tokenizer processes media: processing (stream, windows, nvidia_compat), chunk or window, tiles,
    optional short-side resize."""

    def __init__(
        self,
        engine: TokenizerEngine,
        *,
        temporal_window: int | None = None,
        temporal_overlap: int | None = None,
        tile: tuple[int, int] | None = None,
        tile_overlap: int | None = None,
        short_size: int | None = None,
        processing: str | None = None,
        attention_horizon: HorizonSetting = "auto",
    ) -> None:
        self.engine = engine
        self.processing = _resolve_processing(engine, processing, temporal_overlap, tile, attention_horizon)
        self.attention_horizon = attention_horizon
        self.windows: TemporalWindows | None = None
        self.chunk_frames = 0  # stream: frames of the first chunk; nvidia_compat: NVIDIA's window
        if engine.is_video and self.processing == "windows":
            self.windows = TemporalWindows.resolve(engine.tc, temporal_window, temporal_overlap)
        elif engine.is_video and self.processing == "stream":
            self.chunk_frames = TemporalWindows.resolve(engine.tc, temporal_window, 0).frames
        elif self.processing == "nvidia_compat":
            self.chunk_frames = temporal_window or NVIDIA_TEMPORAL_WINDOW
        self.tiling = Tiling.resolve(engine.sc, tile, tile_overlap)
        self.short_size = short_size
        self.token_dim = 1 if engine.is_discrete else 2  # time axis of indices [B,t,h,w] / latents [B,C,t,h,w]
        self.last_exact = False  # whether the last video or image was one exact pass (see `exact` in TokenMeta)

    @property
    def temporal_window(self) -> int:
        """The window (windows, nvidia_compat) or first chunk (stream) in frames; 0 for image models."""
        return self.windows.frames if self.windows else self.chunk_frames

    @property
    def temporal_overlap(self) -> int:
        return self.windows.overlap if self.windows else 0

    @property
    def pad_fill(self) -> str:
        return "black" if self.processing == "nvidia_compat" else PAD_FILL

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

    def layout(self, height: int, width: int) -> FrameLayout:
        """Where a `height` x `width` frame is padded: to the model's compression, or to 16 in black for NVIDIA."""
        if self.processing == "nvidia_compat":
            return FrameLayout.fit(height, width, max(NVIDIA_SPATIAL_ALIGN, self.engine.sc), "black")
        return FrameLayout.fit(height, width, self.engine.sc, PAD_FILL)

    def _batches(
        self, frames: Iterator[np.ndarray], layout: FrameLayout, counter: list[int], sizes: Iterable[int]
    ) -> Iterator[torch.Tensor]:
        for size in sizes:
            batch = list(itertools.islice(frames, size))
            if not batch:
                return
            counter[0] += len(batch)
            yield layout.pad(to_model_input(np.stack(batch)).to(self.engine.device))

    def _input_sizes(self) -> Iterable[int]:
        if self.processing == "stream":
            return frame_chunk_sizes(self.chunk_frames)
        return itertools.repeat(self.chunk_frames if self.processing == "nvidia_compat" else CHUNK_FRAMES)

    def _start(self, frames: Iterable[np.ndarray]) -> tuple[FrameLayout, Iterator[np.ndarray]]:
        prepared = self.prepare(frames)
        first = next(prepared, None)
        if first is None:
            raise ValueError("no frames to process")
        layout = self.layout(first.shape[0], first.shape[1])
        return layout, itertools.chain([first], prepared)

    def _emit(
        self, outputs: Iterable[torch.Tensor], layout: FrameLayout, counter: list[int], exact: list[bool]
    ) -> Iterator[np.ndarray]:
        """Cropped uint8 frames, `counter[0]` of them; sets `last_exact` once all are out."""
        emitted = 0
        for chunk in outputs:
            frames = to_frames(layout.crop(chunk))[: max(0, counter[0] - emitted)]
            emitted += len(frames)
            yield from frames  # frames past the count are the time padding of the last chunk
        self.last_exact = exact[0]

    def _tiled(self, height: int, width: int) -> bool:
        return tile_count(height, width, self.tiling) > 1

    # ----- window functions (windows mode, images)
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

    # ----- exact streams
    def _stream_encode(self, chunks: Iterable[torch.Tensor], exact: list[bool]) -> Iterator[torch.Tensor]:
        """Tokens of each chunk, one encoder stream per tile; `exact[0]` says at the end whether all stayed exact."""
        engine = self.engine
        blend = "nearest" if engine.is_discrete else "fade"
        streams: TileStreams | None = None
        try:
            for index, x in enumerate(chunks):
                if streams is None:
                    tiles = tile_count(x.shape[-2], x.shape[-1], self.tiling)
                    streams = TileStreams(engine, "encoder", self.attention_horizon, tiles)
                    exact[0] = exact[0] and tiles == 1
                x = pad_chunk_time(x, engine.tc, first=index == 0)
                tokens = run_tiled(streams, x, self.tiling, 1 / engine.sc, blend, keyed=True)
                exact[0] = exact[0] and streams.exact
                yield tokens
        finally:
            if streams is not None:
                streams.close()

    def _stream_decode(self, chunks: Iterable[torch.Tensor], exact: list[bool]) -> Iterator[torch.Tensor]:
        """Frames of each chunk of tokens, one decoder stream per tile."""
        engine = self.engine
        tiling = self.tiling.scaled(engine.sc, divide=True) if self.tiling else None
        streams: TileStreams | None = None
        try:
            for z in chunks:
                if streams is None:
                    tiles = tile_count(z.shape[-2], z.shape[-1], tiling)
                    streams = TileStreams(engine, "decoder", self.attention_horizon, tiles)
                    exact[0] = exact[0] and tiles == 1
                frames = run_tiled(streams, z, tiling, engine.sc, "fade", keyed=True)
                exact[0] = exact[0] and streams.exact
                yield frames
        finally:
            if streams is not None:
                streams.close()

    def _token_chunks(self, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        sizes = latent_chunk_sizes(self.chunk_frames, self.engine.tc, batch.shape[self.token_dim])
        return batch.split(sizes, dim=self.token_dim)

    # ----- NVIDIA's windows
    def _nvidia_window(self, x: torch.Tensor):
        """NVIDIA's padding of one window of (already spatially padded) frames."""
        return nvidia_windows(x.shape[2], x.shape[3], x.shape[4], temporal_window=x.shape[2])[0]

    def _nvidia_encode(self, chunks: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        for x in chunks:
            yield self.engine.encode(pad_window(x, self._nvidia_window(x)))

    def _nvidia_autoencode(self, chunks: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        for x in chunks:
            window = self._nvidia_window(x)
            yield crop_window(self.engine.autoencode(pad_window(x, window)), window)

    def _nvidia_decode(self, batch: torch.Tensor, layout: FrameLayout, num_frames: int) -> Iterator[torch.Tensor]:
        height, width = layout.height + sum(layout.padding[:2]), layout.width + sum(layout.padding[2:])
        windows = nvidia_windows(num_frames, height, width, self.chunk_frames)
        counts = [window.latent_frames(self.engine.tc) for window in windows]
        if sum(counts) != batch.shape[self.token_dim]:
            raise ValueError(
                f"tokens have {batch.shape[self.token_dim]} latent frames, but NVIDIA's windows of a "
                f"{num_frames}-frame video give {sum(counts)}"
            )
        for part, window in zip(batch.split(counts, dim=self.token_dim), windows):
            yield crop_window(self.engine.decode(part), window)

    # ----- videos
    def _video_only(self) -> None:
        if not self.engine.is_video:
            raise ValueError(f"{self.engine.name} is an image tokenizer; give it images (--image_pattern)")

    def encode(self, frames: Iterable[np.ndarray]) -> tuple[torch.Tensor, FrameLayout, int]:
        """Tokens of a whole video (latent `[C,t,h,w]` or indices `[t,h,w]`), its layout and frame count."""
        self._video_only()
        layout, frames = self._start(frames)
        counter, exact = [0], [self.processing == "stream"]
        chunks = self._batches(frames, layout, counter, self._input_sizes())
        if self.processing == "stream":
            parts = self._stream_encode(chunks, exact)
        elif self.processing == "nvidia_compat":
            parts = self._nvidia_encode(chunks)
        else:
            parts = stream_windows(chunks, self._encode_window, self.windows.encode_plan(), 2, self.token_dim)
        tokens = torch.cat(list(parts), self.token_dim)
        self.last_exact = exact[0]
        return tokens[0].cpu(), layout, counter[0]

    def decode(self, tokens: torch.Tensor, layout: FrameLayout, num_frames: int) -> Iterator[np.ndarray]:
        """Frames decoded from `tokens` (as `encode` returns them), cropped to `layout` and `num_frames`."""
        self._video_only()
        batch = tokens.unsqueeze(0).to(self.engine.device)
        exact = [self.processing == "stream"]
        if self.processing == "stream":
            outputs = self._stream_decode(self._token_chunks(batch), exact)
        elif self.processing == "nvidia_compat":
            outputs = self._nvidia_decode(batch, layout, num_frames)
        else:
            plan = self.windows.decode_plan()
            outputs = stream_windows(
                batch.split(plan.step_in, dim=self.token_dim), self._decode_window, plan, self.token_dim, 2
            )
        return self._emit(outputs, layout, [num_frames], exact)

    def autoencode(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Reconstructed frames, streamed; equal to `decode(encode(frames))` with the same settings."""
        self._video_only()
        layout, frames = self._start(frames)
        counter, exact = [0], [self.processing == "stream"]
        chunks = self._batches(frames, layout, counter, self._input_sizes())
        engine = self.engine
        if self.processing == "stream":
            outputs = self._stream_decode(self._stream_encode(chunks, exact), exact)
        elif self.processing == "nvidia_compat":
            outputs = self._nvidia_autoencode(chunks)
        elif engine.can_encode and engine.can_decode:
            windows = self.windows
            tokens = stream_windows(chunks, self._encode_window, windows.encode_plan(), 2, self.token_dim)
            outputs = stream_windows(tokens, self._decode_window, windows.decode_plan(), self.token_dim, 2)
        else:
            outputs = stream_windows(chunks, self._autoencode_window, self.windows.autoencode_plan(), 2, 2)
        return self._emit(outputs, layout, counter, exact)

    # ----- images
    def _image_input(self, image: np.ndarray) -> tuple[torch.Tensor, FrameLayout]:
        image = next(self.prepare([image]))
        layout = self.layout(image.shape[0], image.shape[1])
        x = layout.pad(to_model_input(image[None]).to(self.engine.device))
        self.last_exact = self.processing != "nvidia_compat" and not self._tiled(x.shape[-2], x.shape[-1])
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
