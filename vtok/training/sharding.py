"""FSDP2 (`fully_shard`): weights, gradients, optimizer state and EMA sharded over ranks, gathered for saves.

Each ResNet and attention block is one FSDP unit, then the rest of the network; parameters become DTensors in place,
so module names and state_dict keys stay NVIDIA's. Full state dicts are gathered onto rank 0's CPU for a
save (every rank must call these, they are collectives), and optimizer state in NVIDIA's integer-indexed
layout (over the trainable parameters, in the network's order) is translated to and from the parameter names the
distributed state-dict API uses.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor

from .recompute import BLOCKS

FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def shard(network: nn.Module) -> nn.Module:
    """fully_shard each ResNet and attention block, then the network (in place)."""
    warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")  # no in-place use
    for module in network.modules():
        if isinstance(module, BLOCKS):
            fully_shard(module)
    return fully_shard(network)


def full_tensor(value: torch.Tensor) -> torch.Tensor:
    """The whole tensor of a DTensor (a collective), or the tensor itself."""
    return value.full_tensor() if isinstance(value, DTensor) else value


def full_model_state(network: nn.Module) -> dict[str, torch.Tensor]:
    """The network's full state dict on rank 0's CPU ({} elsewhere)."""
    return get_model_state_dict(network, options=FULL)


def trainable_names(network: nn.Module) -> list[str]:
    """The names of the parameters the optimizer steps, in its order (the network's, frozen ones left out)."""
    return [name for name, p in network.named_parameters() if p.requires_grad]


def full_optimizer_state(network: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's full state on rank 0's CPU, with integer parameter ids in the network's order."""
    state = get_optimizer_state_dict(network, optimizer, options=FULL)
    if not state:
        return {}
    index = {name: i for i, name in enumerate(trainable_names(network))}
    groups = [{**g, "params": [index[n] for n in g["params"]]} for g in state["param_groups"]]
    return {"state": {index[n]: v for n, v in state["state"].items()}, "param_groups": groups}


def load_full_optimizer_state(network: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load an integer-indexed full optimizer state into a sharded optimizer."""
    names = trainable_names(network)
    groups = [{**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]]
    named = {"state": {names[i]: v for i, v in state["state"].items()}, "param_groups": groups}
    set_optimizer_state_dict(network, optimizer, named, options=StateDictOptions(full_state_dict=True))
