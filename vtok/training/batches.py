"""An endless stream of training batches that can start mid-epoch, so a resumed run sees the data it would have.

`build_dataloader`'s sampler yields one epoch's shuffled windows per rank; this skips the first `start` batches
(micro-batches already consumed, counted over epochs) by skipping sampler indices, without loading them.
"""

from __future__ import annotations

import itertools
from typing import Iterator

import torch
from torch.utils.data import DataLoader, Sampler

from ..data import set_epoch


class SkipSampler(Sampler):
    """`sampler` without its first `skip` indices (for the first, partly consumed, epoch of a resumed run)."""

    def __init__(self, sampler: Sampler, skip: int = 0) -> None:
        self.sampler = sampler
        self.skip = skip

    def __iter__(self) -> Iterator:
        return itertools.islice(iter(self.sampler), self.skip, None)

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)


def training_batches(loader: DataLoader, start: int = 0) -> Iterator[torch.Tensor]:
    """Videos of `loader`, epoch after epoch (reshuffled each), from micro-batch number `start` on."""
    per_epoch = len(loader)
    if per_epoch == 0:
        raise ValueError("the training split has fewer clips than one batch per rank: add videos, or lower "
                         "dataloader_train.batch_size")
    batch_sampler = loader.batch_sampler
    original = batch_sampler.sampler
    epoch, skip = divmod(start, per_epoch)
    for epoch in itertools.count(epoch):
        set_epoch(loader, epoch)
        batch_sampler.sampler = SkipSampler(original, skip * loader.batch_size)
        skip = 0
        for batch in loader:
            yield batch["video"]


def validation_batches(loader: DataLoader, limit: int) -> Iterator[torch.Tensor]:
    """The first `limit` videos batches of the validation loader, always the same ones."""
    for batch in itertools.islice(loader, limit):
        yield batch["video"]
