"""Memory layout of the video networks: channels_last_3d, the layout oneDNN's CPU convs (and cuDNN's) prefer.

With weights and activations stored channels-last, Conv3d runs without reordering its input and output at
every call, and the per-frame GroupNorm reshapes are views instead of copies; measured on this CPU in fp32
(bench/inference_throughput.py) it is the fastest layout, and results match the contiguous layout up to
fp32 summation order. `load_tokenizer` picks it for video models; inputs follow the weights' layout.
"""

from __future__ import annotations

import torch
from torch import nn


def memory_format_of(t: torch.Tensor) -> torch.memory_format:
    """channels_last_3d when a 5D tensor is stored that way (and not also plain-contiguous), else contiguous."""
    if t.dim() == 5 and t.is_contiguous(memory_format=torch.channels_last_3d) and not t.is_contiguous():
        return torch.channels_last_3d
    return torch.contiguous_format


def network_memory_format(module: nn.Module) -> torch.memory_format:
    """The layout `module`'s 5D weights are stored in (contiguous when it has none); its inputs follow it."""
    return next((memory_format_of(p) for p in module.parameters() if p.dim() == 5), torch.contiguous_format)


def default_memory_format(is_video: bool, device: torch.device) -> torch.memory_format:
    """The fastest layout for inference: channels_last_3d for video models on CPU and CUDA."""
    return torch.channels_last_3d if is_video and device.type in ("cpu", "cuda") else torch.contiguous_format


def set_memory_format(module: nn.Module, layout: torch.memory_format) -> nn.Module:
    """Store `module`'s 5D weights in `layout` (in place); its inputs then follow (see Tokenizer._to_model)."""
    for p in module.parameters():
        if p.dim() == 5:
            p.data = p.data.contiguous(memory_format=layout)
    return module
