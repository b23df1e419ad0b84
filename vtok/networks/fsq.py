"""Finite scalar quantization exactly as Cosmos-Tokenize1 does it (docs/design.md#fsq).

The rounding always runs in float32, whatever the network's dtype, so bf16 and fp32 models give the
same indices; codes come back in the dtype of the input. Decoding indices is a lookup into the
`implicit_codebook` buffer, which follows the module's dtype, so traced decoders run in any dtype.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def round_ste(z: torch.Tensor) -> torch.Tensor:
    """Round half to even, with a straight-through gradient."""
    return z + (torch.round(z) - z).detach()


class FSQuantizer(nn.Module):
    """Bounds each of len(levels) channels with tanh, rounds it to its grid and returns codes in [-1, 1]."""

    def __init__(self, levels: tuple[int, ...] = (8, 8, 8, 5, 5, 5), persistent: bool = False) -> None:
        super().__init__()
        levels_t = torch.tensor(levels, dtype=torch.int32)
        basis = torch.cumprod(torch.tensor((1,) + tuple(levels[:-1])), dim=0).to(torch.int32)
        self.levels = tuple(levels)
        self.dim = len(levels)
        self.codebook_size = math.prod(levels)
        self.register_buffer("_levels", levels_t, persistent=persistent)
        self.register_buffer("_basis", basis, persistent=persistent)
        codebook = self._digits_to_codes(self._index_digits(torch.arange(self.codebook_size)))
        self.register_buffer("implicit_codebook", codebook.to(torch.bfloat16), persistent=persistent)

    def _half_width(self) -> torch.Tensor:
        return (self._levels // 2).float()

    def _index_digits(self, indices: torch.Tensor) -> torch.Tensor:
        return (indices.long().unsqueeze(-1) // self._basis.long()) % self._levels.long()

    def _digits_to_codes(self, digits: torch.Tensor) -> torch.Tensor:
        hw = self._half_width()
        return (digits.float() - hw) / hw

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """tanh squashing to (-L/2, L/2), shifted by half a step for even L (fp32)."""
        levels = self._levels.float()
        half_l = (levels - 1) * (1 + 1e-3) / 2
        offset = torch.where(self._levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half_l)
        return torch.tanh(z.float() + shift) * half_l - offset

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """Channels-last z [..., dim] -> channels-last codes [..., dim] in fp32."""
        return round_ste(self.bound(z)) / self._half_width()

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """Channels-last codes -> int32 indices in [0, prod(levels))."""
        hw = self._half_width()
        return ((codes.float() * hw + hw) * self._basis.float()).sum(dim=-1).to(torch.int32)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """int indices [B,...] -> channels-first codes [B,dim,...] in the codebook's dtype (exact)."""
        codes = self.implicit_codebook[indices.long()]
        return codes.movedim(-1, 1).contiguous()

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z [B,dim,...] -> (indices [B,...] int32, codes [B,dim,...] like z, a zero aux loss).

        The zero tensor has the reference's shape (z.mean over dims 1..3, keepdim) so traced encoders
        return the same three outputs as NVIDIA's encoder.jit.
        """
        codes = self.quantize(z.movedim(1, -1))
        indices = self.codes_to_indices(codes)
        codes = codes.movedim(-1, 1).type_as(z)
        aux = torch.zeros_like(codes.mean(dim=(1, 2, 3), keepdim=True))
        return indices, codes, aux


class InvQuantizerJit(nn.Module):
    """Indices -> codes, as the first stage of a traced decoder (`inv_quant.quantizer.*` keys)."""

    def __init__(self, quantizer: FSQuantizer) -> None:
        super().__init__()
        self.quantizer = quantizer

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        return self.quantizer.indices_to_codes(indices)
