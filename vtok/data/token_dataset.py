"""Tokens that `vtok encode` wrote, read back for training: either output format, random access, one sample a row.

The dataset reads the JSONL manifest an encode run with `--output_dir` writes (`manifest.jsonl`): a sample is a whole
video, or one window of `--clip_frames`. Per-file outputs are read with the safetensors file (clip mode: its row);
shard samples by seeking to their byte offset in the tar, so no shard is scanned. `sampler` gives each rank of a
data-parallel run its own part of the samples.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch.utils.data import Dataset, DistributedSampler

from ..io.token_shards import MANIFEST_FILE, read_manifest, read_sample_bytes
from ..io.tokens import load_token_bytes, read_token_meta


class TokenDataset(Dataset):
    """Samples of an encode run's manifest: `{"tokens": latent or int32 indices, "meta": TokenMeta fields, **record}`.

    `root` is the manifest or the folder holding it (the run's --output_dir)."""

    def __init__(self, root: str | Path) -> None:
        path = Path(root)
        self.manifest = path / MANIFEST_FILE if path.is_dir() else path
        if not self.manifest.is_file():
            raise ValueError(f"no token manifest at {self.manifest} (written by `vtok encode --output_dir`)")
        self.folder = self.manifest.parent
        self.records = read_manifest(self.manifest)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        if "offset" in record:
            tokens, meta = load_token_bytes(
                read_sample_bytes(self.folder, record), f"{record['output']}:{record['key']}"
            )
        else:
            path = self.folder / record["output"]
            meta = read_token_meta(path)
            with safe_open(str(path), framework="pt") as handle:
                if "window" in record:
                    row = record["window"]
                    tokens = handle.get_slice(meta.tensor_name)[row : row + 1][0]
                else:
                    tokens = handle.get_tensor(meta.tensor_name)
            if "window" in record:
                meta.clip_starts = [record["window_start"]]
        return {"tokens": tokens, "meta": asdict(meta), **record}

    def sampler(
        self, rank: int | None = None, world_size: int | None = None, shuffle: bool = True, seed: int = 0
    ) -> DistributedSampler:
        """Each rank's share of the samples (torch's DistributedSampler: call `set_epoch` each epoch; when the count
        does not divide evenly, a few samples are repeated so every rank has as many); rank and world size default
        to the process group's."""
        return DistributedSampler(self, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed)


def collate_tokens(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch: `tokens` stacked (samples of one shape), every other field as a list."""
    batch = {key: [s[key] for s in samples] for key in samples[0]}
    batch["tokens"] = torch.stack(batch["tokens"])
    return batch
