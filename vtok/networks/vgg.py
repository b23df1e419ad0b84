"""VGG16's convolutional trunk in torchvision's layout, for LPIPS and the perceptual training loss.

`features.{i}.weight/bias` match torchvision's `vgg16().features`, so its ImageNet file (e.g.
`vgg16-397923af.pth`) loads once its `classifier.*` keys are dropped (vtok.checkpoint.auxiliary reads it).
Nothing is ever downloaded.
"""

from __future__ import annotations

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
