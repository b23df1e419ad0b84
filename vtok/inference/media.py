"""Videos and images on disk through a tokenizer: encode to tokens with their metadata, decode them back, autoencode.

The command line's `vtok encode` / `decode` / `autoencode` are these functions over many files, so a Python user
gets the same exact round trip: `decode_tokens(engine, *encode_video(pipeline, path))` gives the frames that
`autoencode_video(pipeline, path, ...)` writes (with the same settings).

    engine = load_engine("checkpoints/Cosmos-Tokenize1-DV8x16x16-720p")
    tokens, meta = encode_video(Pipeline(engine), "clip.mp4")      # indices [t,h,w] and what decoding needs
    frames = list(decode_tokens(engine, tokens, meta))            # uint8 [H,W,3] frames, the clip's length
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io import VideoWriter, iter_frames, probe_video, read_image, write_image
from ..io.tokens import TokenMeta
from ..networks.config import overrides_of
from ..networks.video_streams import HorizonSetting
from .engine import TokenizerEngine
from .pipeline import FrameLayout, Pipeline
from .streams import horizon_label, parse_horizon

RECORDED = "recorded"  # decode streamed tokens with the attention horizon they were encoded with


def encoding_settings(pipeline: Pipeline) -> dict[str, Any]:
    """What the tokens of this pipeline depend on (io.tokens.ENCODING_FIELDS), as token files record it."""
    engine, tiling = pipeline.engine, pipeline.tiling
    return {
        "model": engine.name,
        "overrides": overrides_of(engine.name, engine.config),
        "checkpoint_id": engine.encoder_id,
        "short_size": pipeline.short_size or 0,
        "temporal_window": pipeline.temporal_window,
        "temporal_overlap": pipeline.temporal_overlap,
        "tile": [tiling.height, tiling.width] if tiling else [],
        "tile_overlap": tiling.overlap if tiling else 0,
        "processing": pipeline.processing,
        "attention_horizon": horizon_label(pipeline.attention_horizon) if pipeline.processing == "stream" else "",
        "pad_fill": pipeline.pad_fill,
    }


def token_meta(
    pipeline: Pipeline,
    source: Path,
    layout: FrameLayout,
    media: str,
    fps: str,
    num_frames: int,
    source_size: tuple[int, int],
    checkpoint: Sequence[str] = (),
) -> TokenMeta:
    """What decoding a token file needs: the model, the frame layout and count, how it was processed (the
    pipeline's last run says whether it was exact)."""
    engine = pipeline.engine
    return TokenMeta(
        **encoding_settings(pipeline),
        exact=pipeline.last_exact,
        kind="discrete" if engine.is_discrete else "continuous",
        media=media,
        fps=fps,
        num_frames=num_frames,
        height=layout.height,
        width=layout.width,
        padding=layout.padding,
        source=str(source),
        source_height=source_size[0],
        source_width=source_size[1],
        checkpoint=[str(c) for c in checkpoint],
    )


def encode_video(
    pipeline: Pipeline, source: str | Path, checkpoint: Sequence[str] = ()
) -> tuple[torch.Tensor, TokenMeta]:
    """Tokens of a whole video (latent `[C,t,h,w]` or int32 indices `[t,h,w]`) and their metadata.

    `checkpoint` names the files the engine was loaded from, recorded in the metadata."""
    source = Path(source)
    info = probe_video(source)
    tokens, layout, num_frames = pipeline.encode(iter_frames(source))
    fps = f"{info.fps.numerator}/{info.fps.denominator}"
    return tokens, token_meta(pipeline, source, layout, "video", fps, num_frames, (info.height, info.width), checkpoint)


def encode_image(
    pipeline: Pipeline, source: str | Path, checkpoint: Sequence[str] = ()
) -> tuple[torch.Tensor, TokenMeta]:
    """Tokens of one image (`[C,h,w]` / `[h,w]`, with a time axis of 1 from a video model) and their metadata."""
    source = Path(source)
    image = read_image(source)
    tokens, layout = pipeline.encode_image(image)
    return tokens, token_meta(pipeline, source, layout, "image", "", 1, image.shape[:2], checkpoint)


def replay_pipeline(
    engine: TokenizerEngine,
    meta: TokenMeta,
    tile: tuple[int, int] | None = None,
    tile_overlap: int | None = None,
    attention_horizon: HorizonSetting | str = RECORDED,
) -> Pipeline:
    """A pipeline that processes as the tokens were made (stream chunks, windows or NVIDIA's windows), so decoding
    matches the encoding run. Streamed tokens decode in the same chunks (bit for bit what autoencode gives), with
    `attention_horizon` (default RECORDED: the setting they were encoded with); a jit engine, which cannot
    stream, decodes them in approximate windows."""
    if meta.model != engine.name:
        raise ValueError(f"the tokens were made by {meta.model}, but the checkpoint is {engine.name}")
    processing = meta.processing
    if processing == "stream" and engine.tokenizer is None:
        processing = "windows"
    stream = processing == "stream"
    if attention_horizon == RECORDED:
        attention_horizon = parse_horizon(meta.attention_horizon) if stream and meta.attention_horizon else "auto"
    return Pipeline(
        engine,
        temporal_window=meta.temporal_window or None,
        temporal_overlap=meta.temporal_overlap if meta.temporal_window and processing == "windows" else None,
        tile=tile,
        tile_overlap=tile_overlap,
        processing=processing,
        attention_horizon=attention_horizon if stream else "auto",
    )


def decode_tokens(
    engine: TokenizerEngine,
    tokens: torch.Tensor,
    meta: TokenMeta,
    tile: tuple[int, int] | None = None,
    tile_overlap: int | None = None,
    attention_horizon: HorizonSetting | str = RECORDED,
) -> Iterator[np.ndarray]:
    """The frames (uint8 `[H,W,3]`, one for an image) that `tokens` decode to, cropped to the source's layout."""
    pipeline = replay_pipeline(engine, meta, tile, tile_overlap, attention_horizon)
    layout = FrameLayout(meta.height, meta.width, tuple(meta.padding))
    if meta.media == "image":
        return iter([pipeline.decode_image(tokens, layout)])
    return pipeline.decode(tokens, layout, meta.num_frames)


def write_decoded(
    engine: TokenizerEngine,
    tokens: torch.Tensor,
    meta: TokenMeta,
    target: str | Path,
    tile: tuple[int, int] | None = None,
    tile_overlap: int | None = None,
    crf: int = 18,
    attention_horizon: HorizonSetting | str = RECORDED,
) -> Path:
    """Decode `tokens` into `target`: an image file, or an H.264 mp4 at the source's fps and frame count."""
    frames = decode_tokens(engine, tokens, meta, tile, tile_overlap, attention_horizon)
    if meta.media == "image":
        return write_image(target, next(frames))
    with VideoWriter(target, Fraction(meta.fps), crf) as writer:
        for frame in frames:
            writer.write(frame)
    return Path(target)


def autoencode_video(
    pipeline: Pipeline,
    source: str | Path,
    target: str | Path,
    *,
    fps: float | None = None,
    input_target: str | Path | None = None,
    crf: int = 18,
) -> int:
    """Write the reconstruction of `source` to `target` (and its resized input to `input_target`); frame count."""
    source = Path(source)
    rate = Fraction(fps) if fps else probe_video(source).fps
    with VideoWriter(target, rate, crf) as writer:
        for frame in pipeline.autoencode(iter_frames(source)):
            writer.write(frame)
    if input_target is not None:
        with VideoWriter(input_target, rate, crf) as copy:
            for frame in pipeline.prepare(iter_frames(source)):
                copy.write(frame)
    return writer.frames_written


def autoencode_image(
    pipeline: Pipeline, source: str | Path, target: str | Path, input_target: str | Path | None = None
) -> Path:
    """Write the reconstruction of one image (its format follows `target`'s suffix)."""
    image = read_image(source)
    write_image(target, pipeline.autoencode_image(image))
    if input_target is not None:
        write_image(input_target, next(pipeline.prepare([image])))
    return Path(target)
