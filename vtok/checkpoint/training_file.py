"""Training checkpoints (`model.pt`, `iter_N.pt`) in NVIDIA's layout, assembled and read by one class.

The file is a dict: `model` (`network.<key>` weights and `ema.network-<key with '.' -> '-'>` fp32 EMA copies),
`optimizer`, `scheduler`, `grad_scaler: {}`, `iteration`, and vtok's own `vtok` record, which NVIDIA's loader
ignores (docs/design.md#training-files). Post-training modes add two more top-level entries NVIDIA's loader ignores
too: `vtok_lora` (the unmerged LoRA adapters and the base weights they adapt, see lora_file.py) and
`vtok_adversarial` (the discriminator, its LeCam state, optimizer and schedule). Reading accepts what NVIDIA's and
older files hold too: a flat state dict, bare or `_orig_mod.` keys, no EMA, no optimizer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .reader import CheckpointError, read_torch_file
from .record import ENTRY, VtokRecord
from .state_dict import ema_state_dict, has_ema, model_entry, network_state_dict, training_state_dict

LORA_ENTRY = "vtok_lora"
ADVERSARIAL_ENTRY = "vtok_adversarial"


@dataclass
class TrainingFile:
    """The contents of one training checkpoint, with bare network keys."""

    network: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor] | None = None
    optimizer: dict[str, Any] | None = None  # an integer-indexed optimizer state dict (NVIDIA's FusedAdam or AdamW)
    scheduler: dict[str, Any] | None = None  # a LambdaLR state dict
    iteration: int | None = None
    record: VtokRecord = field(default_factory=VtokRecord)
    top_level_keys: list[str] = field(default_factory=list)
    lora: dict[str, Any] | None = None  # `vtok_lora`: unmerged adapters and adapted base weights (lora_file.py)
    adversarial: dict[str, Any] | None = None  # `vtok_adversarial`: model, optimizer, scheduler state dicts

    def to_payload(self) -> dict[str, Any]:
        """The dict `torch.save` writes, in NVIDIA's layout (plus vtok's entries)."""
        model = {**training_state_dict(self.network), **ema_state_dict(self.ema or {})}
        payload = {
            "model": model,
            "optimizer": self.optimizer or {},
            "scheduler": self.scheduler or {},
            "grad_scaler": {},
            "iteration": int(self.iteration or 0),
            ENTRY: self.record.to_dict(),
        }
        for key, entry in ((LORA_ENTRY, self.lora), (ADVERSARIAL_ENTRY, self.adversarial)):
            if entry:
                payload[key] = entry
        return payload

    @classmethod
    def from_payload(cls, obj: Any, path: str | Path) -> TrainingFile:
        """Interpret what `read_torch_file` returned; CheckpointError naming `path` when it is not a checkpoint."""
        try:
            entry = model_entry(obj)
        except ValueError as err:
            raise CheckpointError(path, str(err)) from None
        top = sorted(str(k) for k in obj) if isinstance(obj, dict) else []
        nested = isinstance(obj, dict) and entry is not obj

        def part(key: str) -> dict | None:
            return obj[key] if nested and isinstance(obj.get(key), dict) and obj[key] else None

        iteration = obj.get("iteration") if nested else None
        return cls(
            network=network_state_dict(entry),
            ema=network_state_dict(entry, ema=True) if has_ema(entry) else None,
            optimizer=part("optimizer"),
            scheduler=part("scheduler"),
            iteration=int(iteration) if isinstance(iteration, (int, torch.Tensor)) else None,
            record=VtokRecord.of_checkpoint(obj),
            top_level_keys=top,
            lora=part(LORA_ENTRY),
            adversarial=part(ADVERSARIAL_ENTRY),
        )

    @classmethod
    def read(cls, path: str | Path) -> TrainingFile:
        """Read and interpret a training checkpoint (weights_only, see reader.py)."""
        return cls.from_payload(read_torch_file(path), path)

    def missing_training_state(self, scheduler_only: bool = False) -> list[str]:
        """The entries a resume needs that this file lacks (`optimizer`, `scheduler`, `iteration`)."""
        wanted = {"scheduler": self.scheduler, "iteration": self.iteration}
        if not scheduler_only:
            wanted = {"optimizer": self.optimizer, **wanted}
        return [key for key, value in wanted.items() if value is None]
