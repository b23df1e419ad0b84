"""Piecewise-constant loss weights by iteration: NVIDIA's `WeightScheduler(boundaries, values)`.

`WeightSchedule(boundaries, values)(it)` is the first `values[i]` whose `it < boundaries[i]`, else `values[-1]`.
NVIDIA's configs use two lengths, and both mean what their code computes:
- `len(values) == len(boundaries) + 1`, the usual piecewise form: `[500000], [0.1, 0.073]` is 0.1 before
  iteration 500k and 0.073 from it on.
- `len(values) == len(boundaries)`: the last value also applies after the last boundary, so that boundary
  changes nothing: `[0], [0.1]` (video_basic's perceptual weight) is 0.1 at every iteration.
The comparison is strict, as in NVIDIA's code (its config docstring says `<=`; the code does `<`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class WeightSchedule:
    """A loss weight as a function of the iteration; validated at construction (ValueError)."""

    boundaries: tuple[int, ...]
    values: tuple[float, ...]

    def __init__(self, boundaries: Sequence[int], values: Sequence[float]) -> None:
        boundaries, values = tuple(int(b) for b in boundaries), tuple(float(v) for v in values)
        if not values:
            raise ValueError("a weight schedule needs at least one value")
        if len(values) not in (len(boundaries), len(boundaries) + 1):
            raise ValueError(
                f"a weight schedule needs as many values as boundaries, or one more; got "
                f"{len(boundaries)} boundaries {list(boundaries)} and {len(values)} values {list(values)}"
            )
        if any(b > a for b, a in zip(boundaries, boundaries[1:])):
            raise ValueError(f"weight schedule boundaries must not decrease, got {list(boundaries)}")
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"weight schedule values must be finite, got {list(values)}")
        object.__setattr__(self, "boundaries", boundaries)
        object.__setattr__(self, "values", values)

    @classmethod
    def constant(cls, value: float) -> WeightSchedule:
        """The same weight at every iteration."""
        return cls((), (value,))

    def __call__(self, iteration: int) -> float:
        for boundary, value in zip(self.boundaries, self.values):
            if iteration < boundary:
                return value
        return self.values[-1]

    @property
    def always_zero(self) -> bool:
        """True when no iteration gets a nonzero weight, so the term need not be built at all."""
        return all(v == 0.0 for v in self.values)
