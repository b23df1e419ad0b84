"""The merged manifest of a sharded `vtok encode`, made from one part file per rank, without a process group.

Each rank writes `<output_dir>/.vtok-parts/part-I-of-N.json` atomically when it is done: the manifest records of
every sample it owns (encoded now or found finished) and its done/skipped/failed files. Parts carry the run's
identity (the file list, the settings, N) so a part of another run is never merged. Under torchrun rank 0 waits
for every part and merges; with `--shard I/N` whichever rank finds all parts present merges (the last to finish;
two that finish together write the same file). A rank that dies leaves no part, so nothing is merged until a rerun
of that rank (which skips its finished files) writes it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..io.atomic import write_bytes_atomic
from ..io.token_shards import MANIFEST_FILE, write_manifest
from .per_file import FileReport
from .sharding import Rank

PARTS_FOLDER = ".vtok-parts"


def run_identity(sources: Sequence[Path], settings: dict[str, Any], count: int, output_format: str) -> str:
    """A fingerprint of what the run encodes: every rank of one run computes the same one."""
    text = json.dumps([sorted(map(str, sources)), settings, count, output_format], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def part_path(output_dir: Path, rank: Rank) -> Path:
    return Path(output_dir) / PARTS_FOLDER / f"part-{rank.index:05d}-of-{rank.count:05d}.json"


def write_part(output_dir: Path, rank: Rank, run_id: str, records: list[dict[str, Any]], report: FileReport) -> Path:
    """This rank's part, written atomically."""
    part = {
        "run_id": run_id,
        "attempt": rank.attempt,
        "rank": rank.index,
        "count": rank.count,
        "records": records,
        "done": [str(p) for p in report.done],
        "skipped": [str(p) for p in report.skipped],
        "failed": [[str(p), reason] for p, reason in report.failed],
    }
    return write_bytes_atomic(part_path(output_dir, rank), json.dumps(part).encode())


def remove_part(output_dir: Path, rank: Rank) -> None:
    """Forget this rank's part of an earlier run (it is rewritten when the rank finishes)."""
    part_path(output_dir, rank).unlink(missing_ok=True)


def read_parts(output_dir: Path, rank: Rank, run_id: str) -> list[dict[str, Any]] | None:
    """Every rank's part of this run (of this torchrun attempt), or None while one is missing."""
    parts = []
    for index in range(rank.count):
        path = part_path(output_dir, Rank(index, rank.count))
        try:
            part = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if part.get("run_id") != run_id or (rank.torchrun and part.get("attempt") != rank.attempt):
            return None
        parts.append(part)
    return parts


def wait_for_parts(output_dir: Path, rank: Rank, run_id: str, poll_s: float = 0.5) -> list[dict[str, Any]]:
    """Every rank's part, waiting for the ranks still at work (torchrun ends this rank if another one dies)."""
    while (parts := read_parts(output_dir, rank, run_id)) is None:
        time.sleep(poll_s)
    return parts


def merge_parts(output_dir: Path, parts: list[dict[str, Any]]) -> tuple[Path, FileReport]:
    """Write the merged manifest (records sorted by source and window) and the report over all ranks."""
    records = sorted((r for part in parts for r in part["records"]), key=lambda r: (r["source"], r["window_start"]))
    path = write_manifest(Path(output_dir) / MANIFEST_FILE, records)
    report = FileReport()
    for part in parts:
        report.done += [Path(p) for p in part["done"]]
        report.skipped += [Path(p) for p in part["skipped"]]
        report.failed += [(Path(p), reason) for p, reason in part["failed"]]
    report.failed.sort()
    return path, report


class RankProgress:
    """Each rank's counts in `.vtok-parts/progress-I.json` (every `write_s`); rank 0 also prints, every `print_s`, one
    line over all ranks: files done of all, failures, clips/s, frames/s and the time left."""

    def __init__(
        self, output_dir: Path, rank: Rank, run_id: str, total: int, write_s: float = 2.0, print_s: float = 10.0
    ) -> None:
        self.folder = Path(output_dir) / PARTS_FOLDER
        self.rank, self.run_id, self.total = rank, run_id, total
        self.write_s, self.print_s = write_s, print_s
        self.last_write = self.last_print = time.monotonic()

    def path(self, index: int) -> Path:
        return self.folder / f"progress-{index:05d}-of-{self.rank.count:05d}.json"

    def __call__(self, report: FileReport, samples: int, frames: int, elapsed: float) -> None:
        now = time.monotonic()
        if now - self.last_write >= self.write_s:
            self.last_write = now
            state = {
                "run_id": self.run_id,
                "files": len(report.done) + len(report.failed),
                "total": self.total,
                "failed": len(report.failed),
                "samples": samples,
                "frames": frames,
                "elapsed": elapsed,
            }
            write_bytes_atomic(self.path(self.rank.index), json.dumps(state).encode())
        if self.rank.index == 0 and self.rank.count > 1 and now - self.last_print >= self.print_s:
            self.last_print = now
            line = self.summary_line()
            if line:
                tqdm.write(line)

    def summary_line(self) -> str | None:
        """E.g. 'all 4 ranks: 120/400 files, 2 failed, 30.1 clips/s, 512 frames/s, 0:01:33 left'."""
        states = []
        for index in range(self.rank.count):
            try:
                state = json.loads(self.path(index).read_text())
            except (OSError, ValueError):
                continue
            if state.get("run_id") == self.run_id:
                states.append(state)
        if not states:
            return None
        files, total = sum(s["files"] for s in states), sum(s["total"] for s in states)
        slowest = max(s["elapsed"] for s in states) or 1e-9
        known = [s for s in states if s["files"] and s["elapsed"] > 0]
        left = max(((s["total"] - s["files"]) * s["elapsed"] / s["files"] for s in known), default=0.0)
        eta = time.strftime("%H:%M:%S", time.gmtime(left)) if known and len(states) == self.rank.count else "?"
        return (
            f"all {self.rank.count} ranks ({len(states)} reporting): {files}/{total} files, "
            f"{sum(s['failed'] for s in states)} failed, {sum(s['samples'] for s in states) / slowest:.1f} clips/s, "
            f"{sum(s['frames'] for s in states) / slowest:.0f} frames/s, {eta} left"
        )
