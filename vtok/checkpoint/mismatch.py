"""The one comparison of a file's tensors with a model's: missing, unexpected and misshapen keys, in one line.

Every strict load (tokenizers, the trainer's start and resume, VGG16 and LPIPS weights) reports through
`StateMismatch`, so the same problem reads the same wherever it is found.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

Shapes = Mapping[str, tuple[int, ...]]


def shapes_of(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


@dataclass
class StateMismatch:
    """How a file's {key: shape} differs from a model's."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    wrong_shape: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)  # key, file, model

    @classmethod
    def compare(
        cls, found: Shapes, expected: Shapes, required: Callable[[str], bool] = lambda key: True
    ) -> StateMismatch:
        """Differences of `found` (the file) from `expected` (the model); only keys `required` may be missing."""
        return cls(
            missing=[k for k in expected if k not in found and required(k)],
            unexpected=[k for k in found if k not in expected],
            wrong_shape=[
                (k, tuple(found[k]), tuple(v))
                for k, v in expected.items()
                if k in found and tuple(found[k]) != tuple(v)
            ],
        )

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.wrong_shape)

    def describe(self, limit: int = 3, unexpected: bool = True) -> str:
        """One line, e.g. 'missing: a, b; wrong shape: c file [3, 4] vs model [3, 5]' (`limit` keys per kind)."""

        def listed(items: list[str]) -> str:
            more = f" ... ({len(items)} in all)" if len(items) > limit else ""
            return ", ".join(items[:limit]) + more

        parts = []
        if self.missing:
            parts.append(f"missing: {listed(self.missing)}")
        if self.unexpected and unexpected:
            parts.append(f"unexpected: {listed(self.unexpected)}")
        if self.wrong_shape:
            parts.append(
                "wrong shape: " + listed([f"{k} file {list(a)} vs model {list(b)}" for k, a, b in self.wrong_shape])
            )
        return "; ".join(parts)
