"""One interface over the ways a tokenizer can be run: vtok's own network, or TorchScript graphs.

`--mode torch` (vtok's default) loads any checkpoint (release folder, model.pt, iter_N.pt, .jit files)
into vtok's network, which runs the FSQ in fp32 and works with every window and tile size.
`--mode jit` (NVIDIA's default) runs the traced graphs of `encoder.jit`/`decoder.jit`/`autoencoder.jit`
as they are. Both give tokens in NVIDIA's format: latents `[B,C,t,h,w]` or int indices `[B,t,h,w]`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..checkpoint import load_tokenizer, resolve_checkpoint
from ..checkpoint.reader import read_jit_file
from ..devices import resolve_device
from ..networks.config import TokenizerConfig

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

    def describe(self) -> str:
        """E.g. 'torch mode, float32, cpu', for logs."""
        return f"{self.mode} mode, {str(self.dtype).removeprefix('torch.')}, {self.device}"

    def _run(self, fn: Fn | None, what: str, x: torch.Tensor) -> torch.Tensor:
        if fn is None:
            raise ValueError(
                f"the {self.name} checkpoint given has no {what} (pass an encoder and a decoder, or a full checkpoint)"
            )
        with torch.inference_mode():
            if x.is_floating_point():
                x = x.to(device=self.device, dtype=self.dtype)
            return fn(x.to(self.device))

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


def _first(out: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out[0]


def _load_jit_engine(
    paths: list[Path], name: str | None, device: torch.device, dtype: torch.dtype, siblings: bool
) -> TokenizerEngine:
    model_name, config, contents = resolve_checkpoint(paths, name, siblings=siblings)
    engine = TokenizerEngine(model_name, config, device, dtype, "jit")
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
    engine = TokenizerEngine(tok.name, tok.config, device, dtype, "torch")
    if "encoder" in tok.loaded_parts:
        engine.encode_fn = (lambda x: tok.encode(x)[0]) if tok.config.is_discrete else tok.encode
    if "decoder" in tok.loaded_parts:
        engine.decode_fn = tok.decode_indices if tok.config.is_discrete else tok.decode
    return engine
