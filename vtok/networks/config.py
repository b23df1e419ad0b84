"""Typed network configs and the eight named Cosmos-Tokenize1 models (docs/design.md#networks).

Field names follow NVIDIA's config dicts (`networks/configs.py`), so a reference dict can be passed
straight to `TokenizerConfig(**d)` and an override key means what NVIDIA's docs say it means.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

VIDEO_KINDS = ("CV", "DV")
IMAGE_KINDS = ("CI", "DI")


@dataclass(frozen=True)
class TokenizerConfig:
    """Architecture of one tokenizer. `name` selects the family: CV/DV (video), CI/DI (image)."""

    name: str = "CV"
    in_channels: int = 3
    out_channels: int = 3
    channels: int = 128
    channels_mult: tuple[int, ...] = (2, 4, 4)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (32,)
    resolution: int = 1024
    dropout: float = 0.0
    patch_size: int = 4
    patch_method: str = "haar"
    spatial_compression: int = 8
    temporal_compression: int = 8
    z_channels: int = 16
    z_factor: int = 1
    latent_channels: int = 16
    formulation: str = "AE"
    quantizer: str = "FSQ"
    embedding_dim: int = 6
    levels: tuple[int, ...] = (8, 8, 8, 5, 5, 5)
    num_quantizers: int = 4
    persistent_quantizer: bool = False
    num_groups: int = 1
    legacy_mode: bool = False
    encoder: str = "FACTORIZED"
    decoder: str = "FACTORIZED"

    def __post_init__(self) -> None:
        for name in ("channels_mult", "attn_resolutions", "levels"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        _check_types(self)
        _check_ranges(self)
        if self.name not in VIDEO_KINDS + IMAGE_KINDS:
            raise ValueError(f"name={self.name!r}: expected one of {VIDEO_KINDS + IMAGE_KINDS}")
        if self.patch_method != "haar":
            raise ValueError(f"patch_method={self.patch_method!r}: only 'haar' is used by Cosmos-Tokenize1")
        for key in ("patch_size", "spatial_compression") + (("temporal_compression",) if self.is_video else ()):
            value = getattr(self, key)
            if value < 1 or value & (value - 1):
                raise ValueError(f"{key}={value}: must be a power of two")
        if self.spatial_compression < self.patch_size:
            raise ValueError("spatial_compression must be >= patch_size")
        n_levels = len(self.channels_mult)
        if self.num_spatial_down > n_levels - (0 if not self.is_video else 1):
            raise ValueError(
                f"spatial_compression={self.spatial_compression} needs {self.num_spatial_down} downsampling "
                f"levels after the patcher, but channels_mult has only {n_levels} levels"
            )
        if self.is_video:
            if self.temporal_compression < self.patch_size:
                raise ValueError("temporal_compression must be >= patch_size")
            if self.encoder != "FACTORIZED" or self.decoder != "FACTORIZED":
                raise ValueError("video tokenizers use encoder='FACTORIZED' and decoder='FACTORIZED'")
        elif self.encoder != "Default" or self.decoder != "Default":
            raise ValueError("image tokenizers use encoder='Default' and decoder='Default'")
        if self.is_discrete and self.quantizer != "FSQ":
            raise ValueError(f"quantizer={self.quantizer!r}: only 'FSQ' is supported")
        if not self.is_discrete and self.formulation not in ("AE", "VAE"):
            raise ValueError(f"formulation={self.formulation!r}: expected 'AE' or 'VAE'")
        if not self.is_discrete and self.formulation == "VAE" and self.z_factor != 2:
            raise ValueError("formulation='VAE' needs z_factor=2 (mean and log-variance)")
        if self.channels % self.norm_groups:
            raise ValueError(f"channels={self.channels} must be divisible by {self.norm_groups} GroupNorm groups")

    @property
    def is_video(self) -> bool:
        return self.name in VIDEO_KINDS

    @property
    def is_discrete(self) -> bool:
        return self.name in ("DV", "DI")

    @property
    def norm_groups(self) -> int:
        """Video blocks normalize each frame with one group; image blocks use 32 groups."""
        return 1 if self.is_video else 32

    @property
    def num_spatial_down(self) -> int:
        return int(math.log2(self.spatial_compression // self.patch_size))

    @property
    def num_temporal_down(self) -> int:
        return int(math.log2(self.temporal_compression // self.patch_size)) if self.is_video else 0

    @property
    def latent_dim(self) -> int:
        """Channels of what the encoder hands out: FSQ code dimension or continuous latent width."""
        return len(self.levels) if self.is_discrete else self.latent_channels

    @property
    def time_factor(self) -> int:
        return self.temporal_compression if self.is_video else 1

    def replace(self, **overrides: Any) -> TokenizerConfig:
        """A copy with some fields changed; unknown fields raise ValueError naming them."""
        check_fields(overrides)
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def _check_types(cfg: TokenizerConfig) -> None:
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        expected = {"int": int, "float": (int, float), "str": str, "bool": bool}.get(str(f.type))
        if expected is None:  # tuple fields, already normalized
            continue
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ValueError(f"{f.name}={value!r}: expected {f.type}")


POSITIVE_FIELDS = (
    "in_channels",
    "out_channels",
    "channels",
    "num_res_blocks",
    "resolution",
    "z_channels",
    "z_factor",
    "latent_channels",
    "embedding_dim",
    "num_quantizers",
    "num_groups",
)


def _check_ranges(cfg: TokenizerConfig) -> None:
    """Every numeric field within what a network can be built from (the power-of-two rules are checked after)."""
    for name in POSITIVE_FIELDS:
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name}={getattr(cfg, name)}: must be at least 1")
    if not cfg.channels_mult or min(cfg.channels_mult) < 1:
        raise ValueError(f"channels_mult={list(cfg.channels_mult)}: must be one or more multipliers, each at least 1")
    if cfg.attn_resolutions and min(cfg.attn_resolutions) < 1:
        raise ValueError(f"attn_resolutions={list(cfg.attn_resolutions)}: each must be at least 1")
    if cfg.name in ("DV", "DI") and (not cfg.levels or min(cfg.levels) < 2):
        raise ValueError(f"levels={list(cfg.levels)}: FSQ needs one or more levels, each at least 2")
    if not 0 <= cfg.dropout < 1:
        raise ValueError(f"dropout={cfg.dropout}: must be in [0, 1)")


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(TokenizerConfig))


def check_fields(keys: Sequence[str] | dict) -> None:
    """Raise ValueError naming every key that is not a TokenizerConfig field (with the closest ones)."""
    unknown = [k for k in keys if k not in FIELD_NAMES]
    if unknown:
        hints = {k: difflib.get_close_matches(k, FIELD_NAMES, n=3) for k in unknown}
        detail = "; ".join(f"{k!r}" + (f" (did you mean {', '.join(v)}?)" if v else "") for k, v in hints.items())
        raise ValueError(f"unknown tokenizer config field(s): {detail}. Valid fields: {', '.join(FIELD_NAMES)}")


def _video(kind: str, tc: int, sc: int, ps: int, z: int) -> TokenizerConfig:
    return TokenizerConfig(name=kind, patch_size=ps, temporal_compression=tc, spatial_compression=sc, z_channels=z)


def _image(kind: str, sc: int, z: int) -> TokenizerConfig:
    return TokenizerConfig(
        name=kind,
        patch_size=2,
        spatial_compression=sc,
        temporal_compression=1,
        z_channels=z,
        num_groups=32,
        encoder="Default",
        decoder="Default",
    )


NAMED_CONFIGS: dict[str, TokenizerConfig] = {
    "CV8x8x8-720p": _video("CV", tc=8, sc=8, ps=4, z=16),
    "CV4x8x8-360p": _video("CV", tc=4, sc=8, ps=2, z=16),
    "DV8x16x16-720p": _video("DV", tc=8, sc=16, ps=4, z=16),
    "DV4x8x8-360p": _video("DV", tc=4, sc=8, ps=2, z=256),
    "CI8x8-360p": _image("CI", sc=8, z=16),
    "CI16x16-360p": _image("CI", sc=16, z=16),
    "DI8x8-360p": _image("DI", sc=8, z=256),
    "DI16x16-360p": _image("DI", sc=16, z=256),
}
MODEL_NAMES = tuple(NAMED_CONFIGS)


def canonical_name(name: str) -> str:
    """Accept 'CV8x8x8-720p', 'CV8x8x8_720p' or 'Cosmos-Tokenize1-CV8x8x8-720p'; return the first form."""
    key = name.strip().removeprefix("Cosmos-Tokenize1-").replace("_", "-")
    for known in MODEL_NAMES:
        if known.lower() == key.lower():
            return known
    close = difflib.get_close_matches(key, MODEL_NAMES, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown tokenizer {name!r}.{hint} Known: {', '.join(MODEL_NAMES)}")


def get_config(name: str, **overrides: Any) -> TokenizerConfig:
    """The named config with `overrides` applied (e.g. channels=32 for a small test model)."""
    return NAMED_CONFIGS[canonical_name(name)].replace(**overrides)


def model_name_in(text: str) -> str | None:
    """The model name contained in a path or folder name, if exactly one is (longest match wins)."""
    low = text.replace("_", "-").lower()
    hits = [n for n in MODEL_NAMES if n.lower() in low]
    return max(hits, key=len) if hits else None


def overrides_of(name: str, config: TokenizerConfig) -> dict[str, Any]:
    """The fields of `config` that differ from the named model's (what rebuilds it with `get_config`)."""
    base = NAMED_CONFIGS.get(name)
    own = config.to_dict()
    return {k: v for k, v in own.items() if base is None or base.to_dict()[k] != v}
