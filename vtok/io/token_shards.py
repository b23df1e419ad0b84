"""Token shards: WebDataset-style tar files of samples, and the JSONL manifest that says where each sample is.

A shard holds, per sample, `KEY.safetensors` (the tokens and their TokenMeta, as a token file holds them) and
`KEY.json` (the sample's manifest record). It is written under a hidden temporary name and renamed when it is
full, so a shard under its name is complete; a process that dies loses only the shard it was filling. The
manifest record of a sample in a shard gives the byte offset and size of its `.safetensors` member, so a reader
seeks straight to it (random access without scanning the tar).
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .atomic import temporary_name, write_bytes_atomic
from .errors import WriteError

SHARD_PATTERN = re.compile(r"^shard-(\d{5})-(\d{6})\.tar$")
MANIFEST_FILE = "manifest.jsonl"
RECORD_KEYS = ("source", "output", "model", "checkpoint_id")  # every manifest record has these


def shard_name(rank: int, number: int) -> str:
    """E.g. 'shard-00001-000004.tar': the 5th shard rank 1 wrote in this folder (over all runs)."""
    return f"shard-{rank:05d}-{number:06d}.tar"


def next_shard_number(folder: Path, rank: int) -> int:
    """The first shard number of `rank` not yet used in `folder`, so a rerun never replaces a finished shard."""
    used = [int(m.group(2)) for p in _listing(folder) if (m := SHARD_PATTERN.match(p)) and int(m.group(1)) == rank]
    return max(used, default=-1) + 1


def existing_shards(folder: Path) -> list[Path]:
    """The finished shards in `folder`, in name order."""
    return [folder / name for name in sorted(_listing(folder)) if SHARD_PATTERN.match(name)]


def _listing(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []


def shard_records(path: Path) -> list[dict[str, Any]]:
    """The manifest records stored in a finished shard (its `.json` members); ValueError when it is not a shard."""
    records = []
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if member.isfile() and member.name.endswith(".json"):
                    handle = tar.extractfile(member)
                    assert handle is not None
                    records.append(json.loads(handle.read()))
    except (tarfile.TarError, OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable token shard ({err})") from err
    return records


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> int:
    """Append one file; the byte offset of its data in the tar."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))
    return tar.offset - -(-len(data) // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


class ShardWriter:
    """Appends samples to `folder/shard-RANK-N.tar`, starting a new shard once one holds `max_bytes`.

    A group of samples (one video's windows) always goes into one shard, so a video is in a finished shard whole
    or not at all. `add` and `close` return the records of the shard they finished (with its name as `output`)."""

    def __init__(self, folder: Path, rank: int, max_bytes: int) -> None:
        self.folder = Path(folder)
        self.rank = rank
        self.max_bytes = max_bytes
        self.number = next_shard_number(self.folder, rank)
        self._tar: tarfile.TarFile | None = None
        self._records: list[dict[str, Any]] = []

    @property
    def path(self) -> Path:
        return self.folder / shard_name(self.rank, self.number)

    def add(self, samples: Iterable[tuple[str, bytes, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Write samples `(key, token file bytes, record)`; the records of a shard this finished, else []."""
        try:
            if self._tar is None:
                self.folder.mkdir(parents=True, exist_ok=True)
                self._tar = tarfile.open(temporary_name(self.path), "w", format=tarfile.USTAR_FORMAT)
            for key, data, record in samples:
                offset = _add_member(self._tar, f"{key}.safetensors", data)
                record = {**record, "output": self.path.name, "key": key, "offset": offset, "size": len(data)}
                _add_member(self._tar, f"{key}.json", json.dumps(record).encode())
                self._records.append(record)
        except OSError as err:
            self.abort()
            raise WriteError(self.path, err, "the samples of this shard were not kept") from err
        return self.close() if self._tar.offset >= self.max_bytes else []

    def close(self) -> list[dict[str, Any]]:
        """Finish the shard being filled (if any) under its name; its records."""
        if self._tar is None:
            return []
        tmp = Path(self._tar.name)
        try:
            self._tar.close()
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except OSError as err:
            self.abort()
            raise WriteError(self.path, err, "the samples of this shard were not kept") from err
        records, self._records, self._tar = self._records, [], None
        self.number += 1
        return records

    def abort(self) -> None:
        """Drop the shard being filled (after an error or an interruption)."""
        if self._tar is not None:
            tmp = Path(self._tar.name)
            try:
                self._tar.close()
            except OSError:
                pass
            tmp.unlink(missing_ok=True)
        self._tar, self._records = None, []


def read_sample_bytes(folder: Path, record: dict[str, Any]) -> bytes:
    """The `.safetensors` bytes of one shard sample, read by seeking to the offset its record gives."""
    with open(Path(folder) / record["output"], "rb") as handle:
        handle.seek(record["offset"])
        data = handle.read(record["size"])
    if len(data) != record["size"]:
        raise ValueError(f"{record['output']}: truncated token shard (sample {record['key']})")
    return data


def write_manifest(path: Path, records: Iterable[dict[str, Any]]) -> Path:
    """Write JSONL records atomically (one sample a line)."""
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
    return write_bytes_atomic(path, text.encode())


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """The records of a JSONL token manifest; ValueError naming the line that is not one."""
    records = []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as err:
        raise ValueError(f"cannot read token manifest {path}: {err.strerror or err}") from err
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict) or any(k not in record for k in RECORD_KEYS):
            raise ValueError(f"{path}:{number}: not a vtok token manifest record (made by `vtok encode`?)")
        records.append(record)
    return records


def is_token_manifest(path: Path) -> bool:
    """True when `path` is a token manifest vtok wrote (its first record reads as one), so it may replace it."""
    try:
        with open(path) as handle:
            first = handle.readline()
        record = json.loads(first)
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(record, dict) and all(k in record for k in RECORD_KEYS)
