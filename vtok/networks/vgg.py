"""VGG16's convolutional trunk in torchvision's layout, for LPIPS and the perceptual loss (spec 4.3).

`features.{i}.weight/bias` match torchvision's `vgg16().features`, so its ImageNet file (e.g.
`vgg16-397923af.pth`) loads once its `classifier.*` keys are dropped. Nothing is ever downloaded.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

# Output channels of each conv, "M" for a 2x2 max pool (torchvision's configuration "D").
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
# Indices into `features` of relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3.
TAP_INDICES = (3, 8, 15, 22, 29)
TAP_CHANNELS = (64, 128, 256, 512, 512)


class VGG16Features(nn.Module):
    """torchvision's `vgg16().features`, returning the activations after the five relu_x_y taps."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in VGG16_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, item, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = item
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[N,3,H,W] -> [relu1_2, relu2_2, relu3_3, relu4_3, relu5_3]; the final max pool is skipped."""
        taps = []
        for i in range(TAP_INDICES[-1] + 1):
            x = self.features[i](x)
            if i in TAP_INDICES:
                taps.append(x)
        return taps


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A flat {name: tensor} dict from a torch.save file, or ValueError naming the file."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises many types on foreign files; all mean "not a state dict"
        raise ValueError(f"{path}: not a readable PyTorch state dict ({err})") from err
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    return obj


def check_state_dict(
    path: str | Path, state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor], what: str
) -> None:
    """Raise ValueError naming the file unless `state` has exactly the keys and shapes of `reference`."""
    expected = {k: tuple(v.shape) for k, v in reference.items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k} {tuple(state[k].shape)} != {expected[k]}"
        for k in sorted(set(expected) & set(state))
        if tuple(state[k].shape) != expected[k]
    ]
    problems = [
        f"{label}: {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
        if items
    ]
    if problems:
        raise ValueError(f"{path} does not fit {what}: {'; '.join(problems)}")


def load_vgg16_features(path: str | Path) -> VGG16Features:
    """VGG16Features from torchvision's full vgg16 state dict (`classifier.*` ignored) or a features-only one.

    A features-only file may keep the `features.` prefix or be `vgg16().features.state_dict()` (bare
    `0.weight`...). Anything else missing, extra or misshapen raises ValueError naming the file.
    """
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith("classifier.")}
    if state and all(re.fullmatch(r"\d+\.(weight|bias)", k) for k in state):
        state = {f"features.{k}": v for k, v in state.items()}
    model = VGG16Features()
    check_state_dict(path, state, model.state_dict(), "VGG16Features (torchvision's vgg16 features)")
    model.load_state_dict(state)
    return model
