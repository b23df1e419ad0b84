"""vtok's own entry in the model files it writes, written and read by this one class.

`iter_N.pt` holds it under the top-level key `vtok` (NVIDIA's loader ignores unknown keys) and every exported
`.jit` holds it as the archive's `vtok.json`. It names the model and its config overrides, so a file loads with no
hint, and for training files where a resumed run continues (micro-batches consumed, EMA updates, world size).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

FORMAT = 1
ENTRY = "vtok"


@dataclass
class VtokRecord:
    """What vtok knows about a file it wrote."""

    name: str | None = None  # e.g. "CV4x8x8-360p"; None for a custom network
    overrides: dict[str, Any] = field(default_factory=dict)  # config fields that differ from the named model's
    data_step: int = 0  # training: micro-batches the job's loader consumed
    world_size: int = 1  # training: processes of the run that wrote it
    ema_updates: int = 0  # training: EMA updates so far (for the EMA warmup)
    format: int = FORMAT

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> VtokRecord:
        """The record in `data` (unknown keys ignored, so newer files still load); an empty one when absent."""
        if not isinstance(data, dict):
            return cls()
        known = {f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data}
        record = cls(**known)
        if not isinstance(record.overrides, dict):
            record.overrides = {}
        return record

    @classmethod
    def of_checkpoint(cls, obj: Any) -> VtokRecord:
        """The record of a loaded training file (its `vtok` entry), empty for NVIDIA's files."""
        return cls.from_dict(obj.get(ENTRY) if isinstance(obj, dict) else None)
