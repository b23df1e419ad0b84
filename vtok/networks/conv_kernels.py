"""Equivalent ways to run the factorized Conv3d layers, and the per-shape table that picks one (docs/design.md#kernels).

A (1,k,k) convolution is a 2D convolution of every frame, and a (k,1,1) or 1x1x1 convolution is a 2D convolution
of a [T, H*W] image; on CPUs those 2D kernels can be faster than the 3D one for some shapes and slower for others
(PyTorch's 3D path falls back to its own `slow_conv3d` for small batch-1 inputs). Which kernel wins depends on the
machine, the shape and whether a backward follows, so nothing here decides: `KernelConv3d` runs the kernel that a
shared table names for the call's signature, and plain `Conv3d` otherwise. The results equal Conv3d's up to fp32
summation order. TorchScript tracing always records the plain Conv3d, so exported files do not change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

Kernel = Callable[[nn.Conv3d, torch.Tensor], torch.Tensor]


def conv3d(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """PyTorch's Conv3d (oneDNN, cuDNN, or slow_conv3d, as PyTorch's own heuristics pick)."""
    return F.conv3d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)


def _frames_conv2d(conv: nn.Conv3d, x: torch.Tensor, layout: torch.memory_format) -> torch.Tensor:
    b, c, t, h, w = x.shape
    frames = x.transpose(1, 2).reshape(b * t, c, h, w).contiguous(memory_format=layout)
    weight = conv.weight.squeeze(2).contiguous(memory_format=layout)
    y = F.conv2d(frames, weight, conv.bias, conv.stride[1:], conv.padding[1:])
    return y.reshape(b, t, *y.shape[1:]).transpose(1, 2)  # frames-major: the next per-frame op reads it as a view


def frames_conv2d(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """A (1,k,k) conv as one Conv2d over all frames folded into the batch."""
    return _frames_conv2d(conv, x, torch.contiguous_format)


def frames_conv2d_channels_last(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """As `frames_conv2d`, with the frames and weight in channels_last."""
    return _frames_conv2d(conv, x, torch.channels_last)


def time_conv2d(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """A (k,1,1) or 1x1x1 conv as a Conv2d with a (k,1) kernel over the [T, H*W] image (a view of a contiguous x)."""
    b, c, t, h, w = x.shape
    y = F.conv2d(x.reshape(b, c, t, h * w), conv.weight.squeeze(-1), conv.bias, (conv.stride[0], 1))
    return y.reshape(b, y.shape[1], y.shape[2], h, w)


KERNELS: dict[str, Kernel] = {
    "conv3d": conv3d,
    "frames_conv2d": frames_conv2d,
    "frames_conv2d_channels_last": frames_conv2d_channels_last,
    "time_conv2d": time_conv2d,
}


def candidates(conv: nn.Conv3d) -> list[str]:
    """The kernels that compute exactly `conv`'s convolution (up to summation order), Conv3d first."""
    if conv.groups != 1 or conv.dilation != (1, 1, 1) or conv.padding_mode != "zeros":
        return ["conv3d"]
    (kt, kh, kw), (st, sh, sw), (pt, ph, pw) = conv.kernel_size, conv.stride, conv.padding
    names = ["conv3d"]
    if kt == 1 and st == 1 and pt == 0:
        names += ["frames_conv2d", "frames_conv2d_channels_last"]
    if kh == kw == 1 and sh == sw == 1 and ph == pw == pt == 0:
        names.append("time_conv2d")
    return names


class Signature(NamedTuple):
    """What a kernel's speed depends on: the input's shape, dtype and layout, the conv's geometry, and whether a
    backward will follow (grad mode), under autocast or not."""

    shape: tuple[int, ...]
    strides: tuple[int, ...]  # the layout: contiguous, channels_last_3d, or frames-major from a 2D kernel
    dtype: str
    weight_shape: tuple[int, ...]
    weight_strides: tuple[int, ...]  # the weights' layout (the network's memory format)
    weight_grad: bool  # frozen weights (decoder-only, LoRA) need no weight gradient
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int
    bias: bool
    grad: bool
    autocast: bool
    device: str


def signature(conv: nn.Conv3d, x: torch.Tensor, weight_grad: bool | None = None) -> Signature:
    """The signature of `conv` called on `x` now (`weight_grad`: whether its weight trains, if not as it is now)."""
    return Signature(
        tuple(x.shape),
        tuple(x.stride()),
        str(x.dtype).removeprefix("torch."),
        tuple(conv.weight.shape),
        tuple(conv.weight.stride()),
        conv.weight.requires_grad if weight_grad is None else weight_grad,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        conv.bias is not None,
        torch.is_grad_enabled(),
        torch.is_autocast_enabled(x.device.type),
        x.device.type,
    )


class KernelConv3d(nn.Conv3d):
    """nn.Conv3d (same parameters and state_dict) that runs the kernel its `kernels` table names for a call's
    signature; without a table, or for a signature it lacks, it is nn.Conv3d."""

    kernels: dict[Signature, str] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernels and not torch.jit.is_tracing():
            name = self.kernels.get(signature(self, x))
            if name is not None:
                return KERNELS[name](self, x)
        return super().forward(x)


def kernel_convs(network: nn.Module) -> list[KernelConv3d]:
    """The network's KernelConv3d modules, in module order."""
    return [m for m in network.modules() if isinstance(m, KernelConv3d)]


def set_kernel_table(network: nn.Module, table: dict[Signature, str] | None) -> None:
    """Give every KernelConv3d of `network` the same table (None: plain Conv3d everywhere)."""
    for conv in kernel_convs(network):
        conv.kernels = table
