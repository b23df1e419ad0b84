"""LoRA in training checkpoints: `iter_N.pt` with the adapters merged into NVIDIA's keys, the unmerged state beside
them for resuming, and the adapters alone in `iter_N_lora.safetensors` (docs/design.md#training-files).

`merge_adapters(file, settings)` turns a TrainingFile whose network (and EMA) hold `*.lora.*` keys into one with
NVIDIA's keys alone, each adapted conv weight replaced by base + delta (what NVIDIA's strict loader,
`load_tokenizer`, `vtok export-jit` and the background jit exports read), plus a `vtok_lora` entry: the settings,
the unmerged adapters (regular and EMA) and the base weights they adapt (regular and EMA). That is all a resume
needs to continue bit-exactly: merged weights cannot be split back exactly. The entry costs one more copy of the
adapted weights (regular and EMA); `iter_N_lora.safetensors` holds the regular adapters under their own keys
(`<conv>.lora.down.weight`, `<conv>.lora.up.weight`), the EMA ones under `ema.<key>`, and the settings in its
metadata.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..io.atomic import atomic_path
from ..networks.lora import ADAPTER, LoRASettings, is_lora_key, merge_lora_state
from .training_file import TrainingFile

EMA_PREFIX = "ema."
DOWN = f"{ADAPTER}.down.weight"


def adapted_weight_keys(state: Mapping[str, torch.Tensor]) -> list[str]:
    """`<conv>.weight` of every conv that has an adapter in `state` (`<conv>.lora.down.weight`)."""
    return [key[: -len(DOWN)] + "weight" for key in state if key.endswith(DOWN)]


def _split(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(adapters, base weights they adapt) of a state dict with `*.lora.*` keys."""
    adapters = {k: v for k, v in state.items() if is_lora_key(k)}
    return adapters, {k: state[k] for k in adapted_weight_keys(state)}


def merge_adapters(file: TrainingFile, settings: LoRASettings) -> TrainingFile:
    """A copy of `file` in NVIDIA's keys (adapters folded in) with the unmerged state as its `lora` entry."""
    adapters, base = _split(file.network)
    entry = {"settings": settings.metadata(), "adapters": adapters, "base": base}
    ema = None
    if file.ema is not None:
        entry["ema_adapters"], entry["ema_base"] = _split(file.ema)
        ema = merge_lora_state(file.ema, settings.scale)
    return dataclasses.replace(file, network=merge_lora_state(file.network, settings.scale), ema=ema, lora=entry)


def entry_settings(entry: Mapping) -> LoRASettings:
    """The LoRA settings a `vtok_lora` entry was saved with (ValueError when it is not one)."""
    settings = entry.get("settings")
    if not isinstance(settings, Mapping) or not isinstance(entry.get("adapters"), Mapping):
        raise ValueError("not a vtok LoRA entry (no settings or adapters)")
    return LoRASettings.from_metadata(settings)


def unmerged_state(entry: Mapping, ema: bool = False) -> dict[str, torch.Tensor]:
    """The adapters and the base weights they adapt, regular or EMA ({} for EMA when the run had none)."""
    prefix = "ema_" if ema else ""
    return {**entry.get(f"{prefix}base", {}), **entry.get(f"{prefix}adapters", {})}


def write_lora_file(path: str | Path, entry: Mapping) -> Path:
    """The adapters alone as safetensors (regular under their keys, EMA under `ema.<key>`), written atomically."""
    tensors = {k: v.contiguous() for k, v in entry["adapters"].items()}
    tensors.update({EMA_PREFIX + k: v.contiguous() for k, v in entry.get("ema_adapters", {}).items()})
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=dict(entry["settings"]))
    return Path(path)


def read_lora_file(path: str | Path, ema: bool = False) -> tuple[LoRASettings, dict[str, torch.Tensor]]:
    """(settings, adapters) of an `iter_N_lora.safetensors`: the regular adapters, or the EMA ones when `ema`.

    Load them with `vtok.networks.lora.add_lora(network, settings)` then `load_lora_state_dict(network, adapters)`.
    """
    with safe_open(str(path), "pt") as handle:
        settings = LoRASettings.from_metadata(handle.metadata() or {})
        keys = [k for k in handle.keys() if k.startswith(EMA_PREFIX) == ema]
        if ema and not keys:
            raise ValueError(f"{path} holds no EMA adapters (the run had model.config.ema.enabled=false)")
        return settings, {k.removeprefix(EMA_PREFIX) if ema else k: handle.get_tensor(k) for k in keys}
