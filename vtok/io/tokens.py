"""Token files: one `.safetensors` per video with its latents or int32 indices and what decoding needs.

Tensors: `latent` `[C,t,h,w]` (continuous video; `[C,h,w]` for an image) or `indices` `[t,h,w]` int32
(discrete; `[h,w]` for an image). Metadata (safetensors' string map, key `vtok`): a JSON `TokenMeta`.
Files are written to a temporary name and renamed, so a file under its final name is always complete,
which is what lets `vtok encode` skip finished videos after an interruption; it skips a file only when the
settings recorded in it (ENCODING_FIELDS: model, checkpoint, resize, processing, windows, tiles) are this run's.
`processing` says how the tokens were made: "stream" (exact: one pass over the whole video, whatever the chunk
size), "windows" (approximate overlapping windows; every file from before streaming existed) or
"nvidia_compat" (NVIDIA's video_cli windows); `exact` whether they are what one pass over the video gives.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load, load_file, save

from .atomic import write_bytes_atomic

FORMAT = "vtok.tokens/1"


@dataclass
class TokenMeta:
    """Everything needed to decode a token file back to the video it came from."""

    model: str
    overrides: dict[str, Any]
    kind: str  # "continuous" or "discrete"
    media: str  # "video" or "image"
    fps: str  # a fraction, e.g. "30000/1001" ("" for images)
    num_frames: int  # frames to keep after decoding (1 for images)
    height: int  # frame size fed to the model (after --short_size, before padding)
    width: int
    padding: tuple[int, int, int, int]  # zeros added: top, bottom, left, right
    source: str = ""
    source_height: int = 0
    source_width: int = 0
    temporal_window: int = 0
    temporal_overlap: int = 0
    checkpoint: list[str] = field(default_factory=list)
    checkpoint_id: str = ""  # io.files.files_identity of the encoder's files
    short_size: int = 0  # --short_size (0: not resized)
    tile: list[int] = field(default_factory=list)  # --tile H W ([] without tiles)
    tile_overlap: int = 0
    processing: str = "windows"  # "stream", "windows" or "nvidia_compat" (files made before streaming: windows)
    exact: bool = False  # one pass over the whole video (stream, no tiles, within the attention horizon)
    attention_horizon: str = ""  # --attention_horizon of a stream ("auto", "all" or latent frames)
    pad_fill: str = "zero"  # what the spatial padding holds: zero (mid-grey), black, replicate, reflect
    clip_frames: int = 0  # --clip_frames: the tensor holds one window per row, each encoded on its own (0: whole)
    clip_stride: int = 0
    clip_starts: list[int] = field(default_factory=list)  # first frame of each window
    format: str = FORMAT

    @property
    def tensor_name(self) -> str:
        return "indices" if self.kind == "discrete" else "latent"


# What `vtok encode` compares before skipping a file: the tokens depend on each of them.
ENCODING_FIELDS = (
    "model",
    "overrides",
    "checkpoint_id",
    "short_size",
    "temporal_window",
    "temporal_overlap",
    "tile",
    "tile_overlap",
    "processing",
    "attention_horizon",
    "pad_fill",
    "clip_frames",
    "clip_stride",
)
# Chunking settings that do not change the tokens of an exact stream.
STREAM_FREE_FIELDS = ("temporal_window", "temporal_overlap")
CLIP_DEFAULTS = {"clip_frames": 0, "clip_stride": 0}  # settings made before clip mode existed lack these


def encoding_differences(meta: TokenMeta, settings: dict[str, Any]) -> list[str]:
    """The ENCODING_FIELDS where a token file's metadata and this run's `settings` differ, e.g.
    ['short_size 256 (this run: 0)']; [] when the file is what this run would write."""

    def same(a: Any, b: Any) -> bool:
        return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)

    streamed = "stream" in (meta.processing, settings["processing"])
    differ = []
    for key in ENCODING_FIELDS:
        if streamed and key in STREAM_FREE_FIELDS:
            continue
        stored, wanted = getattr(meta, key), settings[key] if key in settings else CLIP_DEFAULTS[key]
        if not same(stored, wanted):
            differ.append(f"{key} {stored!r} (this run: {wanted!r})" if key != "checkpoint_id" else "checkpoint files")
    return differ


def token_bytes(tokens: torch.Tensor, meta: TokenMeta) -> bytes:
    """A token file's bytes: what `save_tokens` writes and a token shard holds per sample."""
    return save({meta.tensor_name: tokens.detach().cpu().contiguous()}, metadata={"vtok": json.dumps(asdict(meta))})


def save_tokens(path: str | Path, tokens: torch.Tensor, meta: TokenMeta) -> Path:
    """Write tokens and metadata atomically (serialized in memory, so a full disk is one WriteError)."""
    return write_bytes_atomic(path, token_bytes(tokens, meta))


def read_token_meta(path: str | Path) -> TokenMeta:
    """The metadata of a token file, without reading its tensors; ValueError when it is not one."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = (handle.metadata() or {}).get("vtok")
    except (OSError, SafetensorError) as err:
        raise ValueError(f"{path}: not a safetensors file ({err})") from err
    return parse_token_meta(raw, path)


def parse_token_meta(raw: str | None, path: str | Path) -> TokenMeta:
    """The TokenMeta in a token file's `vtok` metadata string; ValueError naming `path` when it is not one."""
    if raw is None:
        raise ValueError(f"{path}: a safetensors file without vtok token metadata (made by `vtok encode`?)")
    try:
        data = json.loads(raw)
    except ValueError as err:
        raise ValueError(f"{path}: vtok token metadata is not JSON ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: vtok token metadata is not a JSON object")
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: token format {data.get('format')!r}, this vtok reads {FORMAT!r}")
    try:
        data["padding"] = tuple(data["padding"])
        return TokenMeta(**data)
    except (KeyError, TypeError) as err:
        raise ValueError(f"{path}: incomplete vtok token metadata ({err!r})") from err


def load_tokens(path: str | Path) -> tuple[torch.Tensor, TokenMeta]:
    """Tokens and metadata of a file written by `save_tokens`."""
    meta = read_token_meta(path)
    tensors = load_file(str(path))
    if meta.tensor_name not in tensors:
        raise ValueError(f"{path}: no {meta.tensor_name!r} tensor (has {sorted(tensors)})")
    return tensors[meta.tensor_name], meta


def load_token_bytes(data: bytes, where: str = "token bytes") -> tuple[torch.Tensor, TokenMeta]:
    """Tokens and metadata from `token_bytes` output (a sample of a token shard); `where` names it in errors."""
    try:
        header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
        tensors = load(data)
    except (ValueError, SafetensorError) as err:
        raise ValueError(f"{where}: not safetensors data ({err})") from err
    meta = parse_token_meta((header.get("__metadata__") or {}).get("vtok"), where)
    if meta.tensor_name not in tensors:
        raise ValueError(f"{where}: no {meta.tensor_name!r} tensor (has {sorted(tensors)})")
    return tensors[meta.tensor_name], meta


def token_shape(path: str | Path, meta: TokenMeta) -> list[int]:
    """The shape of a token file's tensor, read from its header."""
    with safe_open(str(path), framework="pt") as handle:
        return list(handle.get_slice(meta.tensor_name).get_shape())


def is_complete(path: str | Path) -> bool:
    """True when `path` is a readable token file (a finished earlier run)."""
    try:
        read_token_meta(path)
    except (ValueError, FileNotFoundError):
        return False
    return True
