"""The training and validation DataLoaders: a sampler per rank, seeded workers, and an epoch every worker sees.

Unlike NVIDIA's loaders (no shuffling, no distributed sampler), each rank reads its own
share of the windows, shuffled anew every epoch for training. The sampler hands `(epoch, index)` pairs to
the dataset, so even persistent workers know the epoch; call `set_epoch(loader, epoch)` (or
`loader.sampler.set_epoch`) before each epoch, as with any DistributedSampler.
"""

from __future__ import annotations

import functools
import os
import random
import signal
import threading
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, default_collate

from .config import DatasetConfig, LoaderConfig
from .mock import MockVideoDataset
from .sources import is_mock
from .video_dataset import SPLITS, VideoWindowDataset


class EpochDistributedSampler(DistributedSampler):
    """A DistributedSampler that yields `(epoch, index)`, so the dataset's randomness follows the epoch."""

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, index) for index in super().__iter__())


def build_dataset(cfg: DatasetConfig, split: str = "train", seed: int = 0, progress: bool = False) -> Dataset:
    """The dataset a config names: synthetic clips for a mock source, else windows of its videos."""
    if is_mock(cfg):
        return MockVideoDataset(cfg, split, seed)
    return VideoWindowDataset(cfg, split, seed, progress=progress)


def collate(samples: list[dict]) -> dict:
    """The default collate, with a clear error when clips of one batch differ in size (mixed aspect ratios)."""
    shapes = sorted({tuple(s["video"].shape) for s in samples})
    if len(shapes) > 1:
        sizes = ", ".join(f"{s[-1]}x{s[-2]}" for s in shapes)
        raise ValueError(
            f"clips of one batch differ in size ({sizes}): with batch_size > 1 give an explicit crop "
            "(dataset.crop_width and crop_height), or use videos of one aspect ratio"
        )
    return default_collate(samples)


def _stop_on_parent_sigterm_only() -> None:
    """In a worker: obey SIGTERM from the parent (DataLoader shutdown, interpreter exit) and ignore it from anyone
    else. torchrun and schedulers signal the whole process group, and a worker killed by that would crash the
    rank before the trainer saves and stops; the rank ends its workers itself."""
    parent = os.getppid()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # inherited by the worker's later threads

    def wait() -> None:
        while True:
            if signal.sigwaitinfo({signal.SIGTERM}).si_pid == parent:
                os._exit(0)

    threading.Thread(target=wait, name="vtok-sigterm", daemon=True).start()


def _seed_worker(worker_id: int, seed: int, rank: int) -> None:
    """Seed a worker from (seed, rank, worker); SIGTERM only from its rank (see `_stop_on_parent_sigterm_only`)."""
    _stop_on_parent_sigterm_only()
    state = np.random.SeedSequence([seed % 2**63, rank, worker_id]).generate_state(2)
    random.seed(int(state[0]))
    np.random.seed(int(state[1]))
    torch.manual_seed(int(state[0]) << 32 | int(state[1]))


def build_dataloader(
    cfg: LoaderConfig, split: str = "train", rank: int = 0, world_size: int = 1, seed: int = 0, progress: bool = False
) -> DataLoader:
    """A DataLoader for `split` on `rank` of `world_size`: shuffled, drop-last batches for train, every
    window in order for val; persistent, seeded workers; pinned memory only when CUDA is available."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    cfg.validate()
    is_train = split == "train"
    dataset = build_dataset(cfg.dataset, split, seed, progress)
    sampler = EpochDistributedSampler(
        dataset, num_replicas=world_size, rank=rank, shuffle=is_train, seed=seed, drop_last=is_train
    )
    workers = cfg.num_workers
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=cfg.pin_memory and torch.cuda.is_available(),
        drop_last=is_train,
        persistent_workers=workers > 0,
        prefetch_factor=cfg.prefetch_factor if workers > 0 else None,
        worker_init_fn=functools.partial(_seed_worker, seed=seed, rank=rank) if workers > 0 else None,
    )


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Reshuffle `loader` (and re-draw its augmentations) for `epoch`."""
    loader.sampler.set_epoch(epoch)
