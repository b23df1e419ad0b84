"""Tokenizer heads: the continuous (AE/VAE) and discrete (FSQ) models around an encoder/decoder pair.

Submodules are registered in NVIDIA's order (encoder, decoder, quant_conv, post_quant_conv, then
distribution or quantizer), which fixes the state_dict order and the parameter order optimizers see.
`encoder_jit()`/`decoder_jit()` give modules whose traced forward and state_dict match NVIDIA's
encoder.jit/decoder.jit (docs/design.md#jit-files).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, NamedTuple

import torch
from torch import nn

from .config import TokenizerConfig, canonical_name, get_config
from .fsq import FSQuantizer, InvQuantizerJit
from .image import Decoder, Encoder
from .layers3d import pointwise_conv
from .memory_format import memory_format_of
from .video import DecoderFactorized, EncoderFactorized
from .video_streams import DEFAULT_ATTENTION_BUDGET, DecoderStream, EncoderStream, HorizonSetting


class TokenizerOutput(NamedTuple):
    """What `forward` returns (and what a traced autoencoder.jit returns, as a plain tuple).

    `aux` is `(mean, logvar)` for continuous models (zeros for the AE formulation) and the reference's
    always-zero quantizer loss for discrete ones; `latent` is the latent or the int32 token indices.
    """

    reconstructions: torch.Tensor
    aux: Any
    latent: torch.Tensor


class IdentityDistribution(nn.Module):
    """The AE formulation: the latent is the encoder output; posteriors are two zero placeholders."""

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        return z, (z.new_zeros(1), z.new_zeros(1))


class GaussianDistribution(nn.Module):
    """The VAE formulation: split into mean and log-variance; sample in training, the mean in eval."""

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        mean, logvar = z.chunk(2, dim=1)
        logvar = logvar.clamp(-30.0, 20.0)
        if self.training:
            z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        else:
            z = mean
        return z, (mean, logvar)


class IndexDecoderJit(nn.Module):
    """Token indices -> video, as NVIDIA's discrete decoder.jit (keys `inv_quant.quantizer.*` first)."""

    def __init__(self, quantizer: FSQuantizer, post_quant_conv: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.inv_quant = InvQuantizerJit(quantizer)
        self.post_quant_conv = post_quant_conv
        self.decoder = decoder

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        weight = next(self.post_quant_conv.parameters())
        return self.decoder(self.post_quant_conv(self.inv_quant(indices).type_as(weight)))


class Tokenizer(nn.Module):
    """Shared structure, shape checks and conveniences of the four tokenizer families."""

    def __init__(self, config: TokenizerConfig, name: str | None = None) -> None:
        super().__init__()
        self.config = config
        self.name = name or config.name
        self.loaded_parts = frozenset({"encoder", "decoder"})  # narrowed by load_tokenizer
        if config.is_video:
            self.encoder = EncoderFactorized(config)
            self.decoder = DecoderFactorized(config)
        else:
            self.encoder = Encoder(config)
            self.decoder = Decoder(config)
        z_out = config.z_channels * config.z_factor
        q_out = config.latent_dim * (1 if config.is_discrete else config.z_factor)
        self.quant_conv = self._pointwise(z_out, q_out)
        self.post_quant_conv = self._pointwise(config.latent_dim, config.z_channels)

    def _pointwise(self, chan_in: int, chan_out: int) -> nn.Module:
        return pointwise_conv(chan_in, chan_out) if self.config.is_video else nn.Conv2d(chan_in, chan_out, 1)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def memory_format(self) -> torch.memory_format:
        """torch.channels_last_3d when the video network's weights are stored so (then inputs are too)."""
        return (
            memory_format_of(self.encoder.conv_in[0].conv3d.weight) if self.config.is_video else torch.contiguous_format
        )

    def _to_model(self, x: torch.Tensor) -> torch.Tensor:
        """x on the model's device, dtype and memory format."""
        x = x.to(device=self.device, dtype=self.dtype)
        layout = self.memory_format
        return x if layout == torch.contiguous_format else x.contiguous(memory_format=layout)

    @property
    def compression(self) -> tuple[int, int]:
        """(temporal, spatial) compression; temporal is 1 for image models."""
        return self.config.time_factor, self.config.spatial_compression

    def latent_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of the latent (continuous) or codes (discrete) for an input of `input_shape`."""
        self.check_input_shape(tuple(input_shape))
        tc, sc = self.compression
        b, _, *size = input_shape
        if self.config.is_video:
            t, h, w = size
            return (b, self.config.latent_dim, 1 + (t - 1) // tc, h // sc, w // sc)
        h, w = size
        return (b, self.config.latent_dim, h // sc, w // sc)

    def check_input_shape(self, shape: tuple[int, ...]) -> None:
        """ValueError unless `shape` is [B,3,T,H,W] (video) or [B,3,H,W] (image) with valid sizes."""
        tc, sc = self.compression
        layout = "[B,C,T,H,W]" if self.config.is_video else "[B,C,H,W]"
        if len(shape) != (5 if self.config.is_video else 4) or shape[1] != self.config.in_channels:
            raise ValueError(
                f"{self.name} expects input {layout} with C={self.config.in_channels}, got shape {list(shape)}"
            )
        problems = []
        if self.config.is_video and (shape[2] - 1) % tc:
            problems.append(f"T-1 must be a multiple of {tc} (T = 1, {1 + tc}, {1 + 2 * tc}, ...), got T={shape[2]}")
        if shape[-2] % sc or shape[-1] % sc:
            problems.append(f"H and W must be multiples of {sc}, got H={shape[-2]}, W={shape[-1]}")
        if problems:
            raise ValueError(
                f"{self.name} cannot encode input of shape {list(shape)}: "
                + "; ".join(problems)
                + ". Pad the input to a valid size first (vtok pads and crops back in its CLI)."
            )

    def _check_latent(self, z: torch.Tensor) -> None:
        rank = 5 if self.config.is_video else 4
        if z.ndim != rank or z.shape[1] != self.config.latent_dim:
            raise ValueError(
                f"{self.name} decodes latents of shape [B,{self.config.latent_dim},"
                f"{'t,' if self.config.is_video else ''}h,w], got {list(z.shape)}"
            )

    def _require(self, part: str) -> None:
        if part not in self.loaded_parts:
            raise RuntimeError(
                f"this {self.name} tokenizer was loaded without {part} weights "
                f"(only {', '.join(sorted(self.loaded_parts))}); load a checkpoint that has them"
            )

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        self._require("encoder")
        self.check_input_shape(tuple(x.shape))
        return self._to_model(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent (continuous) or codes (discrete) -> reconstruction in roughly [-1, 1] (not clamped)."""
        self._require("decoder")
        self._check_latent(z)
        return self.decoder(self.post_quant_conv(self._to_model(z)))

    def _encode_head(self, h: torch.Tensor) -> Any:
        """Encoder features -> what `encode` returns."""
        raise NotImplementedError

    def stream_encoder(
        self, attention_horizon: HorizonSetting = "auto", attention_budget: int = DEFAULT_ATTENTION_BUDGET
    ) -> EncoderStream:
        """Encode a video in chunks, exactly as one pass (video models): `with tok.stream_encoder() as enc:
        out = enc(chunk)`; the first chunk has 1 + k*tc frames, later ones k*tc.

        `attention_horizon`: latent frames the temporal attention keeps (None: all; 'auto': as many as fit in
        `attention_budget` bytes). Past it the stream is approximate and says so (`exact`, a warning).
        """
        return EncoderStream(self, attention_horizon, attention_budget)

    def stream_decoder(
        self, attention_horizon: HorizonSetting = "auto", attention_budget: int = DEFAULT_ATTENTION_BUDGET
    ) -> DecoderStream:
        """Decode latents/codes in chunks of any number of latent frames, exactly as one pass (video models);
        discrete models also take indices (`dec.decode_indices(idx)`). Horizon as in `stream_encoder`."""
        return DecoderStream(self, attention_horizon, attention_budget)


class ContinuousTokenizer(Tokenizer):
    """CV / CI models: `encode(x) -> latent`, `decode(latent) -> x`."""

    def __init__(self, config: TokenizerConfig, name: str | None = None) -> None:
        super().__init__(config, name)
        self.distribution = GaussianDistribution() if config.formulation == "VAE" else IdentityDistribution()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self._encode_head(self.encoder(self._prepare(x)))

    def _encode_head(self, h: torch.Tensor) -> torch.Tensor:
        return self.distribution(self.quant_conv(h))[0]

    def forward(self, x: torch.Tensor) -> TokenizerOutput:
        self._require("decoder")
        latent, posteriors = self.distribution(self.quant_conv(self.encoder(self._prepare(x))))
        return TokenizerOutput(self.decoder(self.post_quant_conv(latent)), posteriors, latent)

    def encoder_jit(self) -> nn.Sequential:
        return nn.Sequential(
            OrderedDict(encoder=self.encoder, quant_conv=self.quant_conv, distribution=self.distribution)
        )

    def decoder_jit(self) -> nn.Sequential:
        return nn.Sequential(OrderedDict(post_quant_conv=self.post_quant_conv, decoder=self.decoder))


class DiscreteTokenizer(Tokenizer):
    """DV / DI models: `encode(x) -> (indices, codes)`, `decode(codes)`, `decode_indices(indices)`."""

    def __init__(self, config: TokenizerConfig, name: str | None = None) -> None:
        super().__init__(config, name)
        self.quantizer = FSQuantizer(config.levels, persistent=config.persistent_quantizer)

    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_size

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._encode_head(self.encoder(self._prepare(x)))

    def _encode_head(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        indices, codes, _ = self.quantizer(self.quant_conv(h))
        return indices, codes

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        return self.decode(self.indices_to_codes(indices))

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Integer token indices -> codes [B,dim,...] on the model's device (ValueError if out of range)."""
        rank = 4 if self.config.is_video else 3
        if indices.ndim != rank or indices.is_floating_point():
            raise ValueError(
                f"{self.name} decodes integer indices of rank {rank}, got {indices.dtype} {list(indices.shape)}"
            )
        if indices.numel() and (indices.min() < 0 or indices.max() >= self.codebook_size):
            raise ValueError(
                f"token indices must lie in [0, {self.codebook_size}), got [{int(indices.min())}, {int(indices.max())}]"
            )
        return self.quantizer.indices_to_codes(indices.to(self.device))

    def forward(self, x: torch.Tensor) -> TokenizerOutput:
        self._require("decoder")
        indices, codes, aux = self.quantizer(self.quant_conv(self.encoder(self._prepare(x))))
        return TokenizerOutput(self.decoder(self.post_quant_conv(codes)), aux, indices)

    def encoder_jit(self) -> nn.Sequential:
        return nn.Sequential(OrderedDict(encoder=self.encoder, quant_conv=self.quant_conv, quantizer=self.quantizer))

    def decoder_jit(self) -> IndexDecoderJit:
        return IndexDecoderJit(self.quantizer, self.post_quant_conv, self.decoder)


def tokenizer_from_config(config: TokenizerConfig, name: str | None = None) -> Tokenizer:
    cls = DiscreteTokenizer if config.is_discrete else ContinuousTokenizer
    return cls(config, name)


def build_tokenizer(name: str, **overrides: Any) -> Tokenizer:
    """A randomly initialized tokenizer by model name (e.g. 'CV8x8x8-720p'), with config overrides.

    Unknown override fields raise ValueError naming them. Build on `torch.device('meta')` to get the
    structure without allocating weights.
    """
    return tokenizer_from_config(get_config(name, **overrides), canonical_name(name))
