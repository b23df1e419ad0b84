"""Process group, device and data-parallel wrapping: torchrun's environment on CUDA (NCCL) or CPU (gloo).

Without torchrun's variables the run is one process and no process group is made, so `vtok train` works
anywhere. Unlike NVIDIA's `distributed.init`, nothing here needs pynvml, libcudart or NCCL.
"""

from __future__ import annotations

import os
import time
from contextlib import AbstractContextManager as ContextManager
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..config.schema import TrainerConfig
from ..devices import resolve_device


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: its rank among `world_size`, its local rank and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized()


def pick_device(choice: str, local_rank: int) -> torch.device:
    """`auto`: this rank's CUDA device when CUDA is available, else the CPU (ValueError naming the key otherwise)."""
    try:
        return resolve_device(choice, index=local_rank)
    except ValueError as err:
        raise ValueError(f"trainer.device={choice}: {err} (trainer.device=cpu trains on the CPU)") from None


def init_distributed(config: TrainerConfig) -> DistInfo:
    """Join torchrun's process group when its variables are set (NCCL on CUDA, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(config.device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if "MASTER_ADDR" in os.environ and "RANK" in os.environ and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        timeout = timedelta(seconds=config.collective_timeout_s)
        dist.init_process_group(
            backend,
            store=attempt_store(rank, world_size, timeout),
            rank=rank,
            world_size=world_size,
            timeout=timeout,
            device_id=device if device.type == "cuda" else None,
        )
    return DistInfo(rank, world_size, local_rank, device)


def attempt_store(rank: int, world_size: int, timeout: timedelta) -> dist.Store:
    """The rendezvous store at MASTER_ADDR:MASTER_PORT, with keys of this attempt only.

    After `torchrun --max-restarts` restarts the workers, the agent's store still holds the previous attempt's
    keys; without a per-attempt prefix a new rank can read the address of a dead peer and fail to connect
    (gloo: "Connection refused")."""
    agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == str(True)
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        world_size,
        is_master=rank == 0 and not agent_store,
        timeout=timeout,
    )
    return dist.PrefixStore(f"vtok/attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


PEER_FAILURE_MARKERS = (
    "Connection closed by peer",
    "Connection reset by peer",
    "Broken pipe",
    "timed out",
    "Timed out",
    "NCCL",
    "gloo",
)


def is_peer_failure(error: BaseException) -> bool:
    """True for an error of a collective: another rank died (gloo's closed connection, NCCL's errors) or a
    collective outlived the process-group timeout. DDP's reducer raises these as plain RuntimeErrors."""
    return isinstance(error, dist.DistError) or (
        isinstance(error, RuntimeError) and any(marker in str(error) for marker in PEER_FAILURE_MARKERS)
    )


def close_distributed() -> None:
    """Destroy the process group, after a short pause without the GIL: gloo's worker threads may still be releasing
    the tensors of the last collectives, which takes the GIL, and destroying the group meanwhile deadlocks."""
    if dist.is_available() and dist.is_initialized():
        time.sleep(0.1)
        dist.destroy_process_group()


def broadcast_object(value: Any, info: DistInfo) -> Any:
    """Rank 0's `value` on every rank."""
    if not info.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0, device=info.device if info.device.type == "cuda" else None)
    return box[0]


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The sum over ranks (in place)."""
    if info.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def mean_over_ranks(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The mean over ranks (a new tensor; `tensor` is left as it is)."""
    return all_reduce_sum(tensor.clone(), info) / info.world_size


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def wrap_data_parallel(network: nn.Module, info: DistInfo) -> nn.Module:
    """DDP (gradients all-reduced, no buffer broadcasts: the network's buffers are constants); one process: as is."""
    if not info.distributed or info.world_size == 1:
        return network
    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(network, device_ids=device_ids, broadcast_buffers=False)


def no_sync(model: nn.Module, skip: bool) -> ContextManager:
    """Skip the gradient all-reduce of a non-final micro-step of gradient accumulation."""
    if skip and isinstance(model, DistributedDataParallel):
        return model.no_sync()
    return nullcontext()
