"""Activation checkpointing of the network's ResNet and attention blocks: less memory for one more forward.

Each block's `forward` is replaced on the instance by a checkpointed call of itself, so module names and
state_dict keys stay NVIDIA's (no `_checkpoint_wrapped_module` level).
"""

from __future__ import annotations

import functools

from torch import nn
from torch.utils.checkpoint import checkpoint

from ..networks.layers3d import CausalAttnBlock, CausalResnetBlockFactorized3d, CausalTemporalAttnBlock

BLOCKS = (CausalResnetBlockFactorized3d, CausalAttnBlock, CausalTemporalAttnBlock)


def _checkpointed(forward, *args, **kwargs):
    return checkpoint(forward, *args, use_reentrant=False, **kwargs)


def recompute_blocks(network: nn.Module) -> int:
    """Activation checkpointing of every ResNet/attention block of `network`, in place; returns how many."""
    count = 0
    for module in network.modules():
        if isinstance(module, BLOCKS):
            module.forward = functools.partial(_checkpointed, module.forward)
            count += 1
    return count
