"""The adaptive weight (autograd.grad at the decoder's last layer) under 2-process DDP and FSDP2 over gloo:
it runs, and the weight and every gradient match one process with the same global batch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import vtok
from vtok.losses.adversarial import Adversarial
from vtok.networks.discriminator import build_discriminator
from vtok.networks.trainable import apply_trainable, last_layer_weight

pytestmark = pytest.mark.slow  # two spawned processes per case: tens of seconds on a shared CPU
WORLD = 2


def build() -> tuple[vtok.Tokenizer, Adversarial]:
    torch.manual_seed(0)
    network = vtok.build_tokenizer("CV4x8x8-360p", channels=16, num_res_blocks=1).train()
    apply_trainable(network, "all")
    torch.manual_seed(1)
    return network, Adversarial(build_discriminator("patch2d", channels=8, num_layers=2), weight=0.5)


def global_batch() -> torch.Tensor:
    return torch.rand(WORLD, 3, 5, 16, 16, generator=torch.Generator().manual_seed(5)) * 2 - 1


def train_step(
    network: torch.nn.Module, adversarial: Adversarial, x: torch.Tensor, plain: vtok.Tokenizer
) -> torch.Tensor:
    fake = network(x).reconstructions
    rec = (fake - x).abs().mean()
    term, weight = adversarial.generator_term(fake, rec, last_layer_weight(plain))  # read after the forward
    (rec + term).backward()
    return weight


def mean_over_ranks(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    dist.all_reduce(t)
    return t / dist.get_world_size()


def worker(rank: int, parallelism: str, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    network, adversarial = build()
    adversarial.average = mean_over_ranks
    x = global_batch()[rank : rank + 1]
    if parallelism == "ddp":
        wrapped = torch.nn.parallel.DistributedDataParallel(network)
    else:
        from vtok.training.sharding import shard

        wrapped = shard(network)
    weight = train_step(wrapped, adversarial, x, network)
    grads = {
        n: (p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad).clone()
        for n, p in network.named_parameters()
    }
    if rank == 0:
        torch.save({"weight": weight, "grads": grads}, out)
    dist.destroy_process_group()


@pytest.mark.parametrize(("parallelism", "port"), [("ddp", 29541), ("fsdp2", 29542)])
def test_adaptive_weight_matches_one_process(parallelism: str, port: int, tmp_path: Path) -> None:
    network, adversarial = build()
    weight = train_step(network, adversarial, global_batch(), network)
    out = tmp_path / "rank0.pt"
    mp.spawn(worker, args=(parallelism, port, str(out)), nprocs=WORLD, join=True)
    result = torch.load(out, weights_only=True)
    assert result["weight"].item() == pytest.approx(weight.item(), rel=1e-5)
    for name, p in network.named_parameters():
        assert torch.allclose(result["grads"][name], p.grad, rtol=1e-4, atol=1e-6), name
