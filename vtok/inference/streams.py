"""Exact streaming through the torch engine: chunk plans from `--temporal_window`, one network stream per tile.

The network's streams (vtok/networks/video_streams.py) give, chunk by chunk, what one pass over the whole video
gives. Here they meet the command line: `--temporal_window F` (1 + k*tc) makes the first chunk F frames and
every later one F - 1, so each chunk adds k latent frames; the chunk size bounds memory and does not change
the result. With spatial tiles every tile has its own stream (exact in time, blended in space as before), and
the attention budget is shared among them so tiles do not multiply the cache.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import torch

from ..networks.video_streams import DEFAULT_ATTENTION_BUDGET, DecoderStream, EncoderStream, HorizonSetting
from .engine import TokenizerEngine

HORIZON_WORDS = {"auto": "auto", "all": None}


def parse_horizon(text: str) -> HorizonSetting:
    """`--attention_horizon`: 'auto', 'all' (unlimited) or a number of latent frames >= 1."""
    if text in HORIZON_WORDS:
        return HORIZON_WORDS[text]
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"--attention_horizon must be 'auto', 'all' or a number of latent frames >= 1, got {text!r}")
    return value


def horizon_label(setting: HorizonSetting) -> str:
    """How token files record a horizon setting: 'auto', 'all' or the number."""
    return "all" if setting is None else str(setting)


def frame_chunk_sizes(first: int) -> Iterator[int]:
    """Frames per encoder chunk: `first` (1 + k*tc), then `first - 1` (k*tc) each."""
    return itertools.chain([first], itertools.repeat(first - 1))


def latent_chunk_sizes(first: int, time_factor: int, total: int) -> list[int]:
    """Latent frames per decoder chunk for `total` latent frames: those of the encoder chunks of `first` frames."""
    step = (first - 1) // time_factor
    sizes = [min(1 + step, total)]
    while sum(sizes) < total:
        sizes.append(min(step, total - sum(sizes)))
    return sizes


def pad_chunk_time(x: torch.Tensor, time_factor: int, first: bool) -> torch.Tensor:
    """Repeat the last frame so a (final, short) chunk is 1 + k*tc frames (first chunk) or k*tc (later)."""
    extra = -(x.shape[2] - (1 if first else 0)) % time_factor
    return torch.cat([x, x[:, :, -1:].expand(-1, -1, extra, -1, -1)], 2) if extra else x


class TileStreams:
    """The open encoder or decoder streams of one video: one per spatial tile, opened on first use.

    Called as `streams(chunk, tile)` (the `keyed` form of tiles.run_tiled); returns what the engine's encode
    or decode returns for the chunk: latents or int indices, or frames."""

    def __init__(self, engine: TokenizerEngine, part: str, horizon: HorizonSetting, tiles: int = 1) -> None:
        if engine.tokenizer is None:
            raise ValueError("exact streaming needs vtok's network (--mode torch)")
        self.engine, self.part, self.horizon = engine, part, horizon
        self.budget = max(1, DEFAULT_ATTENTION_BUDGET // tiles)
        self.streams: dict[tuple[int, int], EncoderStream | DecoderStream] = {}

    def _open(self) -> EncoderStream | DecoderStream:
        tok = self.engine.tokenizer
        assert tok is not None
        opener = tok.stream_encoder if self.part == "encoder" else tok.stream_decoder
        return opener(self.horizon, self.budget)

    def __call__(self, x: torch.Tensor, tile: tuple[int, int] = (0, 0)) -> torch.Tensor:
        stream = self.streams.get(tile)
        if stream is None:
            stream = self.streams[tile] = self._open()
        engine = self.engine
        first = stream.chunks == 0
        with torch.inference_mode():
            if self.part == "encoder":
                out = stream(x.to(device=engine.device, dtype=engine.dtype))
                out = out[0] if engine.is_discrete else out
            elif engine.is_discrete:
                out = stream.decode_indices(x.to(engine.device))
            else:
                out = stream(x.to(device=engine.device, dtype=engine.dtype))
        self._check(x, out, first)
        return out

    def _check(self, x: torch.Tensor, out: torch.Tensor, first: bool) -> None:
        """The chunk's output has the frames one pass gives for it (1 + k then k latents; 1 + t*tc then t*tc)."""
        engine = self.engine
        expected = list(engine.expected_shape(self.part, tuple(x.shape)))
        token_dim = 1 if engine.is_discrete else 2
        if not first and self.part == "encoder":
            expected[token_dim] = x.shape[2] // engine.tc
        elif not first:
            expected[2] = x.shape[token_dim] * engine.tc
        if list(out.shape) != expected:
            raise ValueError(
                f"the {self.part} stream returned {list(out.shape)} for a chunk of {list(x.shape)}, but "
                f"{engine.name} must return {expected}"
            )

    @property
    def exact(self) -> bool:
        """False once a stream went past its attention horizon."""
        return all(stream.exact for stream in self.streams.values())

    def close(self) -> None:
        for stream in self.streams.values():
            stream.close()
        self.streams.clear()
