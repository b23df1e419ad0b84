"""argparse `type=` helpers for numeric flags: a zero, negative or non-finite value fails at parse time, naming the
flag (`argument --short_size: must be a whole number >= 1, got 0`), before any file is read or model loaded."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _number(kind: type, test: Callable[[float], bool], rule: str) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value

    return parse


positive_int = _number(int, lambda v: v >= 1, "a whole number >= 1")
non_negative_int = _number(int, lambda v: v >= 0, "a whole number >= 0")
positive_float = _number(float, lambda v: math.isfinite(v) and v > 0, "a number > 0")
non_negative_float = _number(float, lambda v: math.isfinite(v) and v >= 0, "a number >= 0")
crf_value = _number(int, lambda v: 0 <= v <= 51, "an H.264 quality (CRF) from 0 to 51")


def attention_horizon(text: str) -> int | str | None:
    """`--attention_horizon`: 'auto', 'all' (None: unlimited) or a number of latent frames >= 1."""
    from ..inference.streams import parse_horizon

    try:
        return parse_horizon(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be 'auto', 'all' or a whole number >= 1, got {text!r}") from None
