"""One interface over the ways a tokenizer can be run: vtok's own network, or TorchScript graphs.

`--mode torch` (vtok's default) loads any checkpoint (release folder, model.pt, iter_N.pt, .jit files)
into vtok's network, which runs the FSQ in fp32 and works with every window and tile size.
`--mode jit` (NVIDIA's default) runs the traced graphs of `encoder.jit`/`decoder.jit`/`autoencoder.jit`
as they are. Only the torch mode keeps the network itself (`tokenizer`), which exact streaming needs: a traced
graph cannot carry state from one chunk to the next. Both give tokens in NVIDIA's format: latents
`[B,C,t,h,w]` or int indices `[B,t,h,w]`.
Every call's output is checked against the shape the model must return (a graph that drops frames, or one
traced for another model, fails the file in one line instead of giving a shorter video or wrong scores).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..checkpoint import CheckpointContents, load_tokenizer, resolve_checkpoint
from ..checkpoint.reader import read_jit_file
from ..devices import resolve_device
from ..io.files import files_identity
from ..networks.config import TokenizerConfig
from ..networks.tokenizer import Tokenizer

MODES = ("torch", "jit")
Fn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class TokenizerEngine:
    """A loaded tokenizer: what it is (name, config), where it runs, and the parts it can run."""

    name: str
    config: TokenizerConfig
    device: torch.device
    dtype: torch.dtype
    mode: str
    encode_fn: Fn | None = None
    decode_fn: Fn | None = None
    autoencode_fn: Fn | None = None
    part_files: dict[str, list[Path]] = field(default_factory=dict)  # "encoder"/"decoder": the files it came from
    tokenizer: Tokenizer | None = None  # vtok's network (torch mode), for exact streaming

    @property
    def tc(self) -> int:
        return self.config.time_factor if self.config.is_video else 1

    @property
    def sc(self) -> int:
        return self.config.spatial_compression

    @property
    def is_video(self) -> bool:
        return self.config.is_video

    @property
    def is_discrete(self) -> bool:
        return self.config.is_discrete

    @property
    def can_encode(self) -> bool:
        return self.encode_fn is not None

    @property
    def can_decode(self) -> bool:
        return self.decode_fn is not None

    @property
    def can_stream(self) -> bool:
        """True when videos can run exactly in chunks (torch mode, a video model)."""
        return self.tokenizer is not None and self.is_video

    @functools.cached_property
    def encoder_id(self) -> str:
        """A fingerprint of the encoder's files (io.files.files_identity), recorded in token files; '' if unknown."""
        files = self.part_files.get("encoder", [])
        return files_identity(files) if files else ""

    def describe(self) -> str:
        """E.g. 'torch mode, float32, cpu', for logs."""
        return f"{self.mode} mode, {str(self.dtype).removeprefix('torch.')}, {self.device}"

    def expected_shape(self, what: str, shape: Sequence[int]) -> tuple[int, ...]:
        """The shape the model's `what` ("encoder", "decoder", "full autoencoder") must return for an input of
        `shape`: tokens on the compressed grid, or frames (1 + (t-1) * tc of them) on the full one."""
        tc, sc, config = self.tc, self.sc, self.config
        if what == "encoder":
            b, _, *size = shape
            grid = ([1 + (size[0] - 1) // tc] if self.is_video else []) + [size[-2] // sc, size[-1] // sc]
            return (b, *grid) if self.is_discrete else (b, config.latent_dim, *grid)
        if what == "decoder":
            b, *grid = shape if self.is_discrete else (shape[0], *shape[2:])
            frames = [1 + (grid[0] - 1) * tc] if self.is_video else []
            return (b, config.out_channels, *frames, grid[-2] * sc, grid[-1] * sc)
        return (shape[0], config.out_channels, *shape[2:])

    def _run(self, fn: Fn | None, what: str, x: torch.Tensor) -> torch.Tensor:
        if fn is None:
            raise ValueError(
                f"the {self.name} checkpoint given has no {what} (pass an encoder and a decoder, or a full checkpoint)"
            )
        with torch.inference_mode():
            if x.is_floating_point():
                x = x.to(device=self.device, dtype=self.dtype)
            y = fn(x.to(self.device))
        expected = self.expected_shape(what, tuple(x.shape))
        if tuple(y.shape) != expected:
            raise ValueError(
                f"the {what} returned {list(y.shape)} for an input of {list(x.shape)}, but {self.name} must return "
                f"{list(expected)} (a checkpoint made for another model, or a broken {what})"
            )
        return y

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels in [-1,1] of a valid size -> latent (continuous) or int indices (discrete)."""
        return self._run(self.encode_fn, "encoder", x)

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Latent or indices -> pixels in about [-1,1]."""
        return self._run(self.decode_fn, "decoder", tokens)

    def autoencode(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of `x`; with a full autoencoder.jit in jit mode this is its one graph."""
        if self.encode_fn is not None and self.decode_fn is not None:
            return self.decode(self.encode(x))
        return self._run(self.autoencode_fn, "full autoencoder", x)


def _checkpoint_paths(checkpoint: Path | None, checkpoint_enc: Path | None, checkpoint_dec: Path | None) -> list[Path]:
    paths = [p for p in (checkpoint_enc, checkpoint_dec) if p is not None]
    if checkpoint is not None and paths:
        raise ValueError("give either --checkpoint or --checkpoint_enc/--checkpoint_dec, not both")
    if checkpoint is None and not paths:
        raise ValueError(
            "no checkpoint given: pass --checkpoint (a release folder, model.pt, iter_N.pt or "
            "autoencoder.jit) or --checkpoint_enc and --checkpoint_dec"
        )
    for p in paths or [checkpoint]:
        if not p.exists():
            raise FileNotFoundError(f"no such checkpoint: {p}")
    return paths or [checkpoint]


def _part_files(contents: Sequence[CheckpointContents]) -> dict[str, list[Path]]:
    return {part: [c.path for c in contents if part in c.parts] for part in ("encoder", "decoder")}


def _first(out: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out[0]


def _load_jit_engine(
    paths: list[Path], name: str | None, device: torch.device, dtype: torch.dtype, siblings: bool
) -> TokenizerEngine:
    model_name, config, contents = resolve_checkpoint(paths, name, siblings=siblings)
    engine = TokenizerEngine(model_name, config, device, dtype, "jit", part_files=_part_files(contents))
    for item in contents:
        if item.kind != "jit":
            raise ValueError(
                f"{item.path} is not a TorchScript file; --mode jit runs .jit files only "
                "(use --mode torch for model.pt / iter_N.pt)"
            )
        module = read_jit_file(item.path, map_location=device)[0].eval().to(dtype)
        if item.parts == {"encoder", "decoder"}:
            engine.autoencode_fn = lambda x, m=module: _first(m(x))
        elif item.parts == {"encoder"}:
            engine.encode_fn = lambda x, m=module: _first(m(x))
        else:
            engine.decode_fn = lambda z, m=module: m(z)
    return engine


def load_engine(
    checkpoint: str | Path | None = None,
    checkpoint_enc: str | Path | None = None,
    checkpoint_dec: str | Path | None = None,
    *,
    tokenizer_type: str | None = None,
    mode: str = "torch",
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.bfloat16,
    ema: bool = False,
) -> TokenizerEngine:
    """Load a tokenizer for inference from NVIDIA's flags (see module doc); fails fast on a bad path or type."""
    if mode not in MODES:
        raise ValueError(f"--mode must be one of {MODES}, got {mode!r}")
    as_path = lambda p: None if p is None else Path(p)  # noqa: E731
    paths = _checkpoint_paths(as_path(checkpoint), as_path(checkpoint_enc), as_path(checkpoint_dec))
    device = resolve_device(str(device) if device is not None else None)
    siblings = checkpoint is not None  # --checkpoint_enc/--checkpoint_dec load exactly what they name
    if mode == "jit":
        return _load_jit_engine(paths, tokenizer_type, device, dtype, siblings)
    tok = load_tokenizer(paths, tokenizer_type, device=device, dtype=dtype, ema=ema, siblings=siblings)
    files = {
        part: [Path(f) for f, parts in tok.load_info["parts"].items() if part in parts]
        for part in ("encoder", "decoder")
    }
    engine = TokenizerEngine(tok.name, tok.config, device, dtype, "torch", part_files=files, tokenizer=tok)
    if "encoder" in tok.loaded_parts:
        engine.encode_fn = (lambda x: tok.encode(x)[0]) if tok.config.is_discrete else tok.encode
    if "decoder" in tok.loaded_parts:
        engine.decode_fn = tok.decode_indices if tok.config.is_discrete else tok.decode
    return engine
