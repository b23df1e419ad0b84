"""fp32 exponential moving average of a network's trainable weights (docs/design.md#ema).

`e <- beta*e + (1-beta)*theta` after every optimizer step. The trainer updates it *before* a save of the same
iteration, so a saved EMA matches its network weights' step (NVIDIA's is one step stale). Frozen parameters
(`model.config.trainable`, LoRA's base weights) have no shadow that moves: their EMA copies are kept as they
were loaded (`frozen`, on the CPU unless sharded), so files and exports keep NVIDIA's full set of `ema.*`
weights, bit-identical to the start's.
With `warmup`, the n-th update of this run uses `min(beta, (1+n)/(10+n))`, so short post-training runs are
not dominated by the starting weights. `swapped(network)` puts the EMA weights into the network (for
validation and export) and restores the trained ones afterwards, as NVIDIA's `ema_scope`. Files name the
shadow's tensors as vtok.checkpoint.state_dict.ema_state_dict says.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn


class EMA:
    """One fp32 shadow tensor per trainable parameter, keyed by the parameter's name; fixed fp32 copies of the
    frozen ones."""

    def __init__(self, network: nn.Module, beta: float = 0.9999, warmup: bool = False) -> None:
        self.beta = beta
        self.warmup = warmup
        self.updates = 0
        self.shadow = {name: p.detach().float().clone() for name, p in network.named_parameters() if p.requires_grad}
        self.frozen = {
            name: p.detach().float().to("cpu", copy=True)
            for name, p in network.named_parameters()
            if not p.requires_grad
        }

    def state(self) -> dict[str, torch.Tensor]:
        """Every parameter's EMA copy (frozen and moving), what a file's `ema.network-*` entries hold."""
        return {**self.frozen, **self.shadow}

    def decay(self) -> float:
        """The beta of the next update."""
        return min(self.beta, (1 + self.updates) / (10 + self.updates)) if self.warmup else self.beta

    @torch.no_grad()
    def update(self, params: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Move the shadow towards `params` ((name, tensor) pairs: the network's, or fp32 master copies)."""
        names, values = zip(*((n, p) for n, p in params if n in self.shadow))
        shadows = [self.shadow[n] for n in names]
        values = [v.detach().to(s.dtype) for v, s in zip(values, shadows)]
        torch._foreach_lerp_(shadows, values, 1.0 - self.decay())
        self.updates += 1

    @torch.no_grad()
    def copy_from(self, network: nn.Module) -> None:
        """Reset every copy to the network's current weights (an EMA that starts where the weights are)."""
        copies = self.state()
        for name, p in network.named_parameters():
            if name in copies:
                copies[name].copy_(p.detach())

    @torch.no_grad()
    def load_network_state(self, state: Mapping[str, torch.Tensor]) -> list[str]:
        """Load bare-key EMA weights (see `network_state_dict(..., ema=True)`); returns the names left unchanged."""
        missing = []
        for name, shadow in self.state().items():
            if name in state:
                if tuple(state[name].shape) != tuple(shadow.shape):
                    raise ValueError(f"EMA weight {name}: file {list(state[name].shape)} vs model {list(shadow.shape)}")
                shadow.copy_(state[name].to(shadow.device, shadow.dtype))
            else:
                missing.append(name)
        return missing

    def shard_like(self, network: nn.Module) -> None:
        """Shard the shadow as the (FSDP2-sharded) network's parameters are, from rank 0's full tensors."""
        from torch.distributed.tensor import DTensor, distribute_tensor

        for name, p in network.named_parameters():
            if not isinstance(p, DTensor):
                continue
            for copies in (self.shadow, self.frozen):
                if name in copies:
                    copies[name] = distribute_tensor(copies[name].to(p.device), p.device_mesh, p.placements)

    @contextmanager
    def swapped(self, network: nn.Module) -> Iterator[nn.Module]:
        """The network with the EMA weights in it (cast to its dtype); its own weights are restored on exit."""
        _reshard(network)
        copies = self.state()
        params = {name: p for name, p in network.named_parameters() if name in copies}
        saved = {name: p.detach().clone() for name, p in params.items()}
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(copies[name])
        try:
            yield network
        finally:
            _reshard(network)
            with torch.no_grad():
                for name, p in params.items():
                    p.copy_(saved[name])


def _reshard(network: nn.Module) -> None:
    """FSDP2 keeps the root's weights gathered after a forward; shard them again so they match the shadow."""
    if hasattr(network, "reshard"):
        network.reshard()
