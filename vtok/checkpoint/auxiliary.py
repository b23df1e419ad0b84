"""Weights of the networks vtok runs around a tokenizer, read from local files: VGG16 and LPIPS' linear heads.

They go through the same weights-only reader and the same strict key/shape check as tokenizer checkpoints.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..networks.vgg import VGG16Features
from .mismatch import StateMismatch, shapes_of
from .reader import CheckpointError, read_state_dict


def check_state_dict(
    path: str | Path, state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor], what: str
) -> None:
    """CheckpointError naming the file unless `state` has exactly the keys and shapes of `reference`."""
    mismatch = StateMismatch.compare(shapes_of(state), shapes_of(reference))
    if mismatch:
        raise CheckpointError(path, f"does not fit {what}: {mismatch.describe()}")


def load_vgg16_features(path: str | Path) -> VGG16Features:
    """VGG16Features from torchvision's full vgg16 state dict (`classifier.*` ignored) or a features-only one.

    A features-only file may keep the `features.` prefix or be `vgg16().features.state_dict()` (bare
    `0.weight`...). Anything else missing, extra or misshapen raises CheckpointError naming the file.
    """
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith("classifier.")}
    if state and all(re.fullmatch(r"\d+\.(weight|bias)", k) for k in state):
        state = {f"features.{k}": v for k, v in state.items()}
    model = VGG16Features()
    check_state_dict(path, state, model.state_dict(), "VGG16Features (torchvision's vgg16 features)")
    model.load_state_dict(state)
    return model
