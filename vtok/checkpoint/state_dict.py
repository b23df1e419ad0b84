"""Key conventions of the checkpoints vtok reads and writes, mapped to bare network keys.

The layouts are described in docs/design.md#training-files and #jit-files.

Training checkpoints (`model.pt`, `iter_N.pt`) store `network.<key>` (maybe with `_orig_mod.`) and EMA
copies as `ema.network-<key with '.' -> '-'>`; TorchScript files store the keys of `encoder_jit()` /
`decoder_jit()` (the decoder's FSQ buffers under `inv_quant.quantizer.`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

EMA_PREFIX = "ema.network-"
NETWORK_PREFIX = "network."
_DROPPED_PREFIXES = ("loss.", "ema.loss-")
_CONSTANT_MARKERS = (".patcher3d.", ".unpatcher3d.", ".patcher.", ".unpatcher.")


def model_entry(obj: Any) -> Mapping[str, Any]:
    """The state dict inside a loaded checkpoint: its `model` (or `state_dict`) entry, or the dict itself."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"expected a dict of tensors, found {type(obj).__name__}")
    for key in ("model", "state_dict"):
        if isinstance(obj.get(key), Mapping):
            return obj[key]
    return obj


def has_ema(state: Mapping[str, Any]) -> bool:
    return any(k.startswith(EMA_PREFIX) for k in state)


def network_state_dict(state: Mapping[str, Any], ema: bool = False) -> dict[str, torch.Tensor]:
    """Bare network keys from a training-style state dict: regular weights, or the EMA ones if `ema`."""
    tensors = {k.replace("_orig_mod.", ""): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if ema:
        if not has_ema(tensors):
            raise ValueError("EMA weights were asked for, but the checkpoint has no 'ema.network-*' entries")
        return {k[len(EMA_PREFIX) :].replace("-", "."): v for k, v in tensors.items() if k.startswith(EMA_PREFIX)}
    out = {}
    for key, value in tensors.items():
        if key.startswith(("ema.",) + _DROPPED_PREFIXES):
            continue
        out[key.removeprefix(NETWORK_PREFIX)] = value
    return out


def jit_state_dict_to_network(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys of encoder.jit/decoder.jit/autoencoder.jit -> bare network keys."""
    return {k.removeprefix("inv_quant."): v for k, v in state.items()}


def is_constant_buffer(key: str) -> bool:
    """Haar and FSQ buffers: fixed by the architecture, absent from training checkpoints."""
    return key.startswith("quantizer.") or any(m in f".{key}" for m in _CONSTANT_MARKERS)


def training_state_dict(network_state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The reference's `model.pt` view of a network: `network.` prefix, constant buffers dropped."""
    return {NETWORK_PREFIX + k: v for k, v in network_state.items() if not is_constant_buffer(k)}


def ema_key(name: str) -> str:
    """NVIDIA's key of the EMA copy of network weight `name`: `ema.network-encoder-conv_in-0-conv3d-weight`."""
    return EMA_PREFIX + name.replace(".", "-")


def ema_state_dict(ema_state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """EMA weights (bare network keys) under NVIDIA's `ema.network-*` keys, in fp32; the inverse of
    `network_state_dict(..., ema=True)`."""
    return {ema_key(k): v.float() for k, v in ema_state.items() if not is_constant_buffer(k)}
