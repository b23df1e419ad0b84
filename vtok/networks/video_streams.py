"""Streaming encode/decode of a video tokenizer: `with tok.stream_encoder() as enc: latents = enc(chunk)`.

A stream feeds a video to the causal network chunk by chunk and returns what one pass over the whole video
would (see streaming.py for how and why that is exact). Encoder chunks hold 1 + k*tc frames first, then
k*tc frames (k may change from chunk to chunk); decoder chunks hold any number of latent frames, and the
first latent frame decodes to 1 frame, every later one to tc frames.

The temporal-attention cache grows by `attention_cache_bytes_per_latent_frame` per latent frame. By default
the horizon is the number of latent frames whose keys and values fit in DEFAULT_ATTENTION_BUDGET (4 GiB per
stream), and the cache holds at most that (H-1 latent frames, plus up to one chunk). At 720p that is 72
latent frames (569 frames) for CV8x8x8 in fp32 and 145 (1153 frames, 48 s at 24 fps) in bf16; DV8x16x16 has
4x as many. With 4 GiB an encoder and a decoder stream together (two full caches, conv state, one chunk's
activations) need about 10 GiB for CV8x8x8 at 720p in bf16 (bench/streaming_memory.py), within a 16 GB GPU,
while clips of up to ~48 s stay exact. Videos within the horizon are exact;
beyond it the attention slides, the stream's `exact` turns False, and an AttentionHorizonWarning is issued
once.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Literal

import torch

from .streaming import Horizon, StreamDecoder, StreamEncoder, StreamMemory, StreamNetwork

if TYPE_CHECKING:
    from .tokenizer import Tokenizer

DEFAULT_ATTENTION_BUDGET = 4 * 2**30
HorizonSetting = int | None | Literal["auto"]


class AttentionHorizonWarning(UserWarning):
    """A stream went past its attention horizon: later outputs are approximate."""


def attention_cache_bytes_per_latent_frame(
    tok: Tokenizer, height: int, width: int, batch: int = 1, dtype: torch.dtype | None = None
) -> dict[str, int]:
    """Bytes of keys and values one latent frame adds to an encoder and to a decoder stream of `batch` videos
    of `height` x `width` pixels, in `dtype` (default: the tokenizer's)."""
    _require_video(tok)
    dtype = dtype or tok.dtype
    tc, sc = tok.compression
    return {
        "encoder": StreamEncoder(tok.encoder, Horizon(None), tc).attention_bytes_per_latent_frame(
            batch, height, width, dtype
        ),
        "decoder": StreamDecoder(tok.decoder, Horizon(None), sc).attention_bytes_per_latent_frame(
            batch, height, width, dtype
        ),
    }


def horizon_for_budget(bytes_per_latent_frame: int, budget: int) -> int | None:
    """The most latent frames whose keys and values fit in `budget` bytes (None without temporal attention)."""
    return None if bytes_per_latent_frame == 0 else max(1, budget // bytes_per_latent_frame)


def _require_video(tok: Tokenizer) -> None:
    if not tok.config.is_video:
        raise ValueError(f"{tok.name} is an image tokenizer; streaming is for the causal video tokenizers")


def _check_setting(attention_horizon: HorizonSetting, attention_budget: int) -> None:
    ok = (
        attention_horizon is None
        or attention_horizon == "auto"
        or (isinstance(attention_horizon, int) and not isinstance(attention_horizon, bool) and attention_horizon >= 1)
    )
    if not ok:
        raise ValueError(
            f"attention_horizon must be 'auto', None (unlimited) or a number of latent frames >= 1, "
            f"got {attention_horizon!r}"
        )
    if not isinstance(attention_budget, int) or attention_budget < 1:
        raise ValueError(f"attention_budget must be a positive number of bytes, got {attention_budget!r}")


class _Stream:
    """What encoder and decoder streams share: the horizon, closing, memory, and checks of chunk shapes."""

    part = ""

    def __init__(
        self, tok: Tokenizer, network: StreamNetwork, horizon: Horizon, setting: HorizonSetting, budget: int
    ) -> None:
        self._tok = tok
        self._network: StreamNetwork | None = network
        self._horizon = horizon
        self._setting = setting
        self._budget = budget
        self._frame_shape: tuple[int, ...] | None = None  # (B, H, W) of the first chunk
        self._warned = False
        self.chunks = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Drop all carried state; later calls raise ValueError."""
        self._network = None

    @property
    def closed(self) -> bool:
        return self._network is None

    @property
    def attention_horizon(self) -> int | None:
        """The horizon in latent frames (resolved from the budget at the first chunk for 'auto')."""
        return self._horizon.latent_frames

    @property
    def exact(self) -> bool:
        """False once an output was computed with a truncated attention (past the horizon)."""
        return self._horizon.inexact_from is None

    @property
    def inexact_from(self) -> int | None:
        """The first latent frame (counted from the start of the video) that is approximate, if any."""
        return self._horizon.inexact_from

    def memory(self) -> StreamMemory:
        """Bytes held between chunks: carried conv frames and the attention cache."""
        return StreamMemory(0, 0) if self._network is None else self._network.memory()

    def _open_network(self) -> StreamNetwork:
        if self._network is None:
            raise ValueError(
                f"this {self._tok.name} {self.part} stream is closed; open a new one with tok.stream_{self.part}()"
            )
        return self._network

    def _check_frames(self, shape: tuple[int, ...], what: str, pixel_hw: tuple[int, int]) -> None:
        """Batch and frame size must stay those of the first chunk."""
        frame_shape = (shape[0], *shape[3:])
        if self._frame_shape is None:
            self._frame_shape = frame_shape
            if self._setting == "auto":
                per_frame = self._network.attention_bytes_per_latent_frame(shape[0], *pixel_hw, self._tok.dtype)
                self._horizon.latent_frames = horizon_for_budget(per_frame, self._budget)
        elif frame_shape != self._frame_shape:
            b, h, w = self._frame_shape
            raise ValueError(
                f"{self._tok.name} {self.part} stream: chunk {self.chunks} has {what} of shape "
                f"{list(shape)}, but the stream started with batch {b} and {h}x{w}; "
                "every chunk of a stream must have the same batch and frame size"
            )

    def _after_chunk(self) -> None:
        self.chunks += 1
        if not self.exact and not self._warned:
            self._warned = True
            warnings.warn(
                f"{self._tok.name} {self.part} stream: past its attention horizon of {self.attention_horizon} "
                f"latent frames the temporal attention no longer sees the whole video; latent frames from "
                f"{self.inexact_from} on are approximate (raise attention_horizon or attention_budget for exact "
                "results)",
                AttentionHorizonWarning,
                stacklevel=3,
            )


class EncoderStream(_Stream):
    """Encodes a video chunk by chunk: the first chunk has 1 + k*tc frames, later ones k*tc (k >= 1).

    Returns, per chunk, the latents (continuous models) or (indices, codes) (discrete models) of its
    frames: the first chunk gives 1 + k latent frames, later ones k.
    """

    part = "encoder"

    def __init__(
        self,
        tok: Tokenizer,
        attention_horizon: HorizonSetting = "auto",
        attention_budget: int = DEFAULT_ATTENTION_BUDGET,
    ) -> None:
        _require_video(tok)
        _check_setting(attention_horizon, attention_budget)
        tok._require("encoder")
        horizon = Horizon(None if attention_horizon == "auto" else attention_horizon)
        super().__init__(
            tok, StreamEncoder(tok.encoder, horizon, tok.compression[0]), horizon, attention_horizon, attention_budget
        )
        self.frames = 0

    def valid_sizes(self) -> str:
        tc = self._tok.compression[0]
        if self.frames == 0:
            return f"the first chunk has 1 + k*{tc} frames (1, {1 + tc}, {1 + 2 * tc}, ...)"
        return f"chunks after the first have k*{tc} frames ({tc}, {2 * tc}, {3 * tc}, ...)"

    def _check(self, x: torch.Tensor) -> None:
        tok = self._tok
        tc, sc = tok.compression
        shape = tuple(x.shape)
        if len(shape) != 5 or shape[1] != tok.config.in_channels:
            raise ValueError(
                f"{tok.name} encoder stream takes [B,{tok.config.in_channels},T,H,W] chunks, got shape {list(shape)}"
            )
        t = shape[2]
        if (t - 1 if self.frames == 0 else t) % tc or (self.frames and t == 0):
            raise ValueError(
                f"{tok.name} encoder stream: chunk {self.chunks} has T={t} frames, but {self.valid_sizes()}"
            )
        if shape[3] % sc or shape[4] % sc:
            raise ValueError(
                f"{tok.name} encoder stream: H and W must be multiples of {sc}, got "
                f"H={shape[3]}, W={shape[4]}; pad the frames first"
            )
        self._check_frames(shape, "frames", (shape[3], shape[4]))

    def __call__(self, chunk: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The latents (continuous) or (indices, codes) (discrete) of this chunk's frames."""
        network = self._open_network()
        self._check(chunk)
        with torch.no_grad():
            out = self._tok._encode_head(network(self._tok._to_model(chunk)))
        self.frames += chunk.shape[2]
        self._after_chunk()
        return out


class DecoderStream(_Stream):
    """Decodes latents (continuous), codes or indices (discrete) chunk by chunk, any latent frames per chunk.

    The first latent frame gives 1 video frame, every later one tc frames.
    """

    part = "decoder"

    def __init__(
        self,
        tok: Tokenizer,
        attention_horizon: HorizonSetting = "auto",
        attention_budget: int = DEFAULT_ATTENTION_BUDGET,
    ) -> None:
        _require_video(tok)
        _check_setting(attention_horizon, attention_budget)
        tok._require("decoder")
        horizon = Horizon(None if attention_horizon == "auto" else attention_horizon)
        super().__init__(
            tok, StreamDecoder(tok.decoder, horizon, tok.compression[1]), horizon, attention_horizon, attention_budget
        )
        self.latent_frames = 0

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        """Video frames (about [-1, 1]) of this chunk of latents (continuous) or codes (discrete)."""
        network = self._open_network()
        tok = self._tok
        shape = tuple(z.shape)
        if len(shape) != 5 or shape[1] != tok.config.latent_dim or shape[2] < 1 or not z.is_floating_point():
            raise ValueError(
                f"{tok.name} decoder stream takes float [B,{tok.config.latent_dim},t,h,w] chunks with "
                f"t >= 1, got {z.dtype} {list(shape)}"
                + ("; pass token indices to decode_indices" if not z.is_floating_point() else "")
            )
        sc = tok.compression[1]
        self._check_frames(shape, "latents", (shape[3] * sc, shape[4] * sc))
        with torch.no_grad():
            out = network(tok.post_quant_conv(tok._to_model(z)))
        self.latent_frames += shape[2]
        self._after_chunk()
        return out

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Video frames of this chunk of integer token indices [B,t,h,w] (discrete models)."""
        tok = self._tok
        if not tok.config.is_discrete:
            raise ValueError(f"{tok.name} is continuous: it has no token indices; call the stream with latents")
        self._open_network()
        return self(tok.indices_to_codes(indices))
