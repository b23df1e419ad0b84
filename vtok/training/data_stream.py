"""An endless stream of training batches that can start mid-epoch, so a resumed run sees the data it would have.

`build_dataloader`'s sampler yields one epoch's shuffled windows per rank; this skips the first `start` batches
(micro-batches already consumed, counted over epochs) by skipping sampler indices, without loading them.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator

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


class TrainingBatches:
    """Videos of `loader`, epoch after epoch (reshuffled each), from micro-batch number `start` on.

    Remembers the source files of the last `keep` batches (`recent_files`), so an error about a step can
    name the clips it was computed on."""

    def __init__(self, loader: DataLoader, start: int = 0, keep: int = 1) -> None:
        if len(loader) == 0:
            raise ValueError(
                "the training split has fewer clips than one batch per rank: add videos, or lower "
                "dataloader_train.batch_size"
            )
        self._recent: deque[list[str]] = deque(maxlen=max(1, keep))
        self._batches = self._iterate(loader, start)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self

    def __next__(self) -> torch.Tensor:
        batch = next(self._batches)
        self._recent.append(batch_files(batch))
        return batch["video"]

    @property
    def recent_files(self) -> list[str]:
        """Source files (with the first frame of each clip) of the last `keep` batches, oldest first."""
        return [name for names in self._recent for name in names]

    @staticmethod
    def _iterate(loader: DataLoader, start: int) -> Iterator[dict]:
        per_epoch = len(loader)
        batch_sampler = loader.batch_sampler
        original = batch_sampler.sampler
        first_epoch, skip = divmod(start, per_epoch)
        for epoch in itertools.count(first_epoch):
            set_epoch(loader, epoch)
            batch_sampler.sampler = SkipSampler(original, skip * loader.batch_size)
            skip = 0
            yield from loader


def batch_files(batch: dict) -> list[str]:
    """`path@frame` of each clip of a collated batch (its `video_name`), or [] when the batch has none."""
    names = batch.get("video_name") if isinstance(batch, dict) else None
    if not isinstance(names, dict) or "path" not in names:
        return []
    starts = names.get("start", [None] * len(names["path"]))
    return [f"{path}@{int(start)}" if start is not None else str(path) for path, start in zip(names["path"], starts)]


def training_batches(loader: DataLoader, start: int = 0, keep: int = 1) -> TrainingBatches:
    """Videos of `loader`, epoch after epoch, from micro-batch number `start` on (see TrainingBatches)."""
    return TrainingBatches(loader, start, keep)


def validation_batches(loader: DataLoader, limit: int) -> Iterator[torch.Tensor]:
    """The first `limit` videos batches of the validation loader, always the same ones."""
    for batch in itertools.islice(loader, limit):
        yield batch["video"]
