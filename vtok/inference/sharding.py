"""Which files one rank of a sharded run encodes: a deterministic, disjoint split balanced by frame count.

A rank is `--shard I/N` (independent jobs, e.g. a SLURM array) or torchrun's RANK/WORLD_SIZE. Every rank computes
the same split from the same sorted file list and frame counts, so no process group is needed and no two ranks
ever own one file. Frame counts come from `vtok index`'s manifest when it has the file unchanged, else from the
container's header (no decoding); a file that cannot be opened weighs one frame (it fails fast when encoded).
"""

from __future__ import annotations

import heapq
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import av

from ..data.manifest import Manifest, default_manifest_path

SHARD_SPEC = re.compile(r"^(\d+)/(\d+)$")


@dataclass(frozen=True)
class Rank:
    """This process's place in a sharded run; `torchrun` when torchrun launched it (rank 0 then merges)."""

    index: int = 0
    count: int = 1
    torchrun: bool = False
    local_index: int = 0
    attempt: str = ""  # torchrun's run id and restart count: the parts of one attempt

    @property
    def label(self) -> str:
        return f"rank {self.index}/{self.count}"


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' -> (I, N) with 0 <= I < N; ValueError in one line otherwise."""
    match = SHARD_SPEC.match(text.strip())
    if not match or int(match.group(2)) < 1 or int(match.group(1)) >= int(match.group(2)):
        raise ValueError(f"--shard must be I/N with 0 <= I < N (e.g. 0/4 for the first of 4 shards), got {text!r}")
    return int(match.group(1)), int(match.group(2))


def rank_of(shard: str | None, environ: Mapping[str, str] = os.environ) -> Rank:
    """The rank `--shard` names, or torchrun's (RANK, WORLD_SIZE); one process without either."""
    world = int(environ.get("WORLD_SIZE", "1"))
    if shard is not None:
        if world > 1:
            raise ValueError("--shard splits the work without torchrun; under torchrun each rank takes its share")
        index, count = parse_shard(shard)
        return Rank(index, count)
    if world > 1:
        attempt = f"{environ.get('TORCHELASTIC_RUN_ID', '')}.{environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
        return Rank(int(environ["RANK"]), world, True, int(environ.get("LOCAL_RANK", "0")), attempt)
    return Rank()


def header_frame_count(path: Path) -> int:
    """Frames of a video by its container's header (reported count, else duration x rate); 1 when unknown."""
    try:
        with av.open(str(path), mode="r") as container:
            stream = container.streams.video[0]
            if stream.frames:
                return int(stream.frames)
            rate = stream.average_rate or stream.guessed_rate
            if stream.duration and stream.time_base and rate:
                return max(1, int(stream.duration * stream.time_base * rate))
            if container.duration and rate:
                return max(1, int(container.duration / av.time_base * rate))
    except (av.FFmpegError, OSError, IndexError):
        pass
    return 1


def frame_counts(paths: Sequence[Path], manifest: Path | None = None, videos: bool = True) -> dict[Path, int]:
    """Frames of each file: from `manifest` (else the `vtok index` manifest beside it, when there is one) for a file
    unchanged since indexed, else `header_frame_count`; images count 1."""
    if not videos:
        return {p: 1 for p in paths}
    manifests: dict[Path, Manifest] = {}
    counts = {}
    for path in paths:
        where = Path(manifest).resolve() if manifest else default_manifest_path(path)
        if where not in manifests:
            manifests[where] = Manifest.load(where) if where.exists() else Manifest(where)
        record = manifests[where].current(path, path.stat())
        counts[path] = record.num_frames or 1 if record is not None and record.readable else header_frame_count(path)
    return counts


def split_by_frames(paths: Sequence[Path], frames: Mapping[Path, int], count: int) -> list[list[Path]]:
    """`count` disjoint lists covering `paths`, each of about the same total frames: the longest file first to the
    least loaded rank (ties: the lower rank), so every rank gets the same answer. Each list keeps input order."""
    loads = [(0, rank) for rank in range(count)]
    owner: dict[Path, int] = {}
    for path in sorted(paths, key=lambda p: (-frames.get(p, 1), str(p))):
        load, rank = heapq.heappop(loads)
        owner[path] = rank
        heapq.heappush(loads, (load + max(1, frames.get(path, 1)), rank))
    return [[p for p in paths if owner[p] == rank] for rank in range(count)]
