"""Training precision: bf16 autocast over fp32 weights (the default), NVIDIA's pure bf16, or fp32.

The rule behind `auto` and why is in docs/design.md#precision.

`bf16_pure` stores the network in bf16 as NVIDIA does and keeps fp32 master weights for the optimizer:
gradients are copied onto the masters, the optimizer steps them, and they are copied back into the network.
The EMA follows the fp32 weights the optimizer updates (`named_master_params`). The adversarial stage's
discriminator keeps fp32 weights in every mode and runs under bf16 autocast in both bf16 modes
(`discriminator_autocast`), so it needs no master copies.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn

from ..devices import native_bf16


def resolve_precision(mode: str, device: torch.device) -> str:
    """`auto` -> bf16_autocast where bf16 is native (CUDA, CPUs with AMX / AVX512-BF16), else fp32."""
    if mode != "auto":
        return mode
    return "bf16_autocast" if native_bf16(device) else "fp32"


class Precision:
    """What each mode changes: the network's dtype, the forward's autocast, and who the optimizer steps."""

    def __init__(self, mode: str, network: nn.Module, device: torch.device) -> None:
        self.mode = mode
        self.device = device
        self.network = network
        self.params = [p for p in network.parameters() if p.requires_grad]
        self.names = [n for n, p in network.named_parameters() if p.requires_grad]
        self.masters: list[torch.Tensor] | None = None
        if mode == "bf16_pure":
            self.masters = [p.detach().float().clone().requires_grad_(True) for p in self.params]
            network.to(torch.bfloat16)

    def autocast(self) -> AbstractContextManager:
        """The context of a forward pass."""
        if self.mode == "bf16_autocast":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def discriminator_autocast(self) -> AbstractContextManager:
        """The context of a discriminator forward: bf16 autocast in both bf16 modes, fp32 otherwise."""
        if self.mode in ("bf16_autocast", "bf16_pure"):
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def cast_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.bfloat16) if self.mode == "bf16_pure" else x

    def optimizer_params(self) -> list[torch.Tensor]:
        """The tensors the optimizer updates: fp32 masters in bf16_pure mode, else the network's parameters."""
        return self.masters if self.masters is not None else self.params

    def named_master_params(self) -> list[tuple[str, torch.Tensor]]:
        return list(zip(self.names, self.optimizer_params()))

    def grads_to_masters(self) -> None:
        """bf16_pure: move the network's gradients onto the fp32 masters (before clipping and the step)."""
        if self.masters is None:
            return
        for master, p in zip(self.masters, self.params):
            master.grad = None if p.grad is None else p.grad.float()
            p.grad = None

    @torch.no_grad()
    def masters_to_network(self) -> None:
        """bf16_pure: the stepped fp32 masters, rounded into the bf16 network."""
        if self.masters is not None:
            torch._foreach_copy_(self.params, self.masters)
