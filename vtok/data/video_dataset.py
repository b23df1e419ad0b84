"""A map-style dataset of video windows: `num_video_frames` frames every `frame_stride`, cropped as NVIDIA crops.

Windows. NVIDIA starts a window at every frame, so a video of N frames gives N-T+1 nearly identical
samples. vtok starts them every `start_interval` frames (default: half a window's span), and in training
shifts each start by a random offset below the interval, drawn anew every epoch, so every start frame is
still reachable while an epoch holds no near-duplicates. Validation windows are fixed.

Split. A video belongs to validation when a hash of its file name falls below `val_fraction`, so train and
val never share a video (hence never a window) and a file keeps its split as the dataset grows. With at
least two videos each split gets at least one. `val_fraction=0` turns the split off: both splits read every
video (for a validation folder of its own given as `dataloader_val.dataset.video_pattern`).

Randomness. Every sample draws from a generator seeded with (seed, epoch, index), so a sample is the same
with any number of workers or ranks. The epoch comes with the index from the sampler (see loader.py), or
from `set_epoch` when the dataset is indexed with plain integers.

Bad files. Unreadable files are skipped at start-up and counted, as are videos shorter than one window. A
video that fails while a window is read is logged once, never read again by that process, and the sample is
replaced by another index chosen from the same seed; after `max_consecutive_failures` failures in a row, or
when every video has failed, the sample raises instead of looping.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch
from torch.utils.data import Dataset

from ..io import MediaError
from .augment import CropPlan, apply_plan, plan_crop, to_clip
from .config import DatasetConfig
from .decode import display_size, read_window
from .manifest import VideoRecord, find_videos, index_videos
from .sources import parse_dataset_name, video_patterns

log = logging.getLogger(__name__)

SPLITS = ("train", "val")
READ_ERRORS = (ValueError, OSError)  # MediaError is a ValueError
MAX_LOGGED = 10  # unreadable files named one by one at start-up


def split_key(path: str | Path) -> float:
    """A number in [0, 1) fixed by the file name alone (sha1), deciding the video's split."""
    digest = hashlib.sha1(Path(path).name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_videos(paths: Sequence[Path], val_fraction: float) -> dict[str, list[Path]]:
    """{"train": [...], "val": [...]}: disjoint by video when val_fraction > 0, both everything when it is 0."""
    paths = list(paths)
    if val_fraction <= 0:
        return {"train": paths, "val": paths}
    keys = {p: split_key(p) for p in paths}
    val = {p for p in paths if keys[p] < val_fraction}
    if len(paths) >= 2 and not val:
        val = {min(paths, key=keys.__getitem__)}
    if len(paths) >= 2 and len(val) == len(paths):
        val.discard(max(paths, key=keys.__getitem__))
    return {"train": [p for p in paths if p not in val], "val": [p for p in paths if p in val]}


def sample_rng(seed: int, epoch: int, index: int, *salt: int) -> np.random.Generator:
    """The generator of one sample, from non-negative (seed, epoch, index[, salt])."""
    return np.random.default_rng([seed % 2**63, epoch % 2**63, index % 2**63, *salt])


def parse_key(key: int | tuple[int, int], default_epoch: int) -> tuple[int, int]:
    """(epoch, index) from a sampler's `(epoch, index)` or a plain index."""
    if isinstance(key, (tuple, list)):
        return int(key[0]), int(key[1])
    return default_epoch, int(key)


@dataclass(frozen=True)
class _Video:
    path: Path
    record: VideoRecord
    windows: int


class VideoWindowDataset(Dataset):
    """Windows of real videos for one split, decoded by seeking and augmented as NVIDIA's (docs/design.md#datasets)."""

    def __init__(self, cfg: DatasetConfig, split: str = "train", seed: int = 0, progress: bool = False) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        cfg.validate()
        self.cfg = cfg
        self.split = split
        self.is_train = split == "train"
        self.resolution = parse_dataset_name(cfg.name).resolution
        self.seed = cfg.seed if cfg.seed is not None else seed
        self.epoch = 0
        self.span = cfg.window_span
        self.start_interval = cfg.start_interval or max(1, self.span // 2)
        patterns = video_patterns(cfg)
        if patterns is None:
            raise ValueError(
                f"{cfg.name} is a synthetic source; use vtok.data.build_dataset for it, or set "
                "video_pattern to read videos"
            )
        self.pattern = ", ".join(patterns)
        try:
            paths = find_videos(patterns)
        except ValueError as err:
            raise ValueError(f"{err} (dataset {cfg.name}; set dataset.video_pattern to your videos)") from None
        chosen = split_videos(paths, cfg.val_fraction)[split]
        if not chosen:
            raise ValueError(
                f"the {split} split of {self.pattern} is empty: {len(paths)} file(s), val_fraction="
                f"{cfg.val_fraction}; add videos, or set val_fraction=0 to validate on the training "
                "videos"
            )
        result = index_videos(chosen, cfg.manifest, cfg.probe_workers, cfg.write_manifest, progress)
        self.videos: list[_Video] = []
        self.unreadable: dict[Path, str] = {}
        self.too_short: list[Path] = []
        for path in chosen:
            record = result.records[path]
            if not record.readable:
                self.unreadable[path] = record.reason or "unreadable"
            elif (record.num_frames or 0) < self.span:
                self.too_short.append(path)
            else:
                self.videos.append(_Video(path, record, (record.num_frames - self.span) // self.start_interval + 1))
        self.stats = {
            "files": len(paths),
            "in_split": len(chosen),
            "videos": len(self.videos),
            "unreadable": len(self.unreadable),
            "too_short": len(self.too_short),
            "probed": result.probed,
            "reused": result.reused,
        }
        if not self.videos:
            other = f", {len(paths) - len(chosen)} in the other split" if len(chosen) < len(paths) else ""
            raise ValueError(
                f"no readable videos with >= {self.span} frames for the {split} split in {self.pattern}: "
                f"{len(self.unreadable)} unreadable, {len(self.too_short)} too short{other}" + self._examples()
            )
        self.offsets = np.cumsum([0] + [v.windows for v in self.videos]).tolist()
        self._bad: dict[int, str] = {}
        for path, reason in list(self.unreadable.items())[:MAX_LOGGED]:
            log.warning("skipping %s: %s", path, reason)
        if len(self.unreadable) > MAX_LOGGED:
            log.warning(
                "... and %d more unreadable files (list them with `vtok index`)", len(self.unreadable) - MAX_LOGGED
            )
        log.info(
            "%s %s: %d windows from %d videos (%d unreadable, %d shorter than %d frames skipped)",
            cfg.name,
            split,
            len(self),
            len(self.videos),
            len(self.unreadable),
            len(self.too_short),
            self.span,
        )

    def _examples(self) -> str:
        bad = [f"\n  {p}: {r}" for p, r in list(self.unreadable.items())[:3]]
        return "".join(bad)

    def __len__(self) -> int:
        return self.offsets[-1]

    def set_epoch(self, epoch: int) -> None:
        """The epoch used for plain integer indices (the sampler passes its own with each index)."""
        self.epoch = epoch

    def locate(self, index: int) -> tuple[int, int]:
        """(video number, window number within it) of a dataset index."""
        video = bisect.bisect_right(self.offsets, index) - 1
        return video, index - self.offsets[video]

    def window_start(self, index: int, rng: np.random.Generator | None = None) -> tuple[int, int]:
        """(video number, first frame) of window `index`; with `rng` (training) the start is jittered."""
        video, window = self.locate(index)
        start = window * self.start_interval
        if rng is not None and self.start_interval > 1:
            last = self.videos[video].record.num_frames - self.span
            start = min(start + int(rng.integers(self.start_interval)), last)
        return video, start

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        epoch, index = parse_key(key, self.epoch)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} windows")
        last = ""
        for attempt in range(self.cfg.max_consecutive_failures):
            video, _ = self.locate(index)
            if video not in self._bad:
                try:
                    return self.sample(index, epoch)
                except READ_ERRORS as err:
                    self._mark_bad(video, err)
            last = f"{self.videos[video].path}: {self._bad[video]}"
            if len(self._bad) == len(self.videos):
                raise RuntimeError(
                    f"every one of the {len(self.videos)} videos in {self.pattern} failed to decode "
                    f"(last: {last}); check them with `vtok index`"
                )
            index = int(sample_rng(self.seed, epoch, index, attempt, 0xBAD).integers(len(self)))
        raise RuntimeError(
            f"{self.cfg.max_consecutive_failures} windows in a row could not be read "
            f"({len(self._bad)} of {len(self.videos)} videos failed, last: {last}); "
            "check the videos with `vtok index`"
        )

    def _mark_bad(self, video: int, err: Exception) -> None:
        reason = err.reason if isinstance(err, MediaError) else str(err)
        self._bad[video] = reason
        log.warning("skipping %s from now on: %s", self.videos[video].path, reason)

    def sample(self, index: int, epoch: int = 0) -> dict:
        """Window `index` decoded and augmented with its (seed, epoch, index) generator; raises on a bad file."""
        rng = sample_rng(self.seed, epoch, index)
        video_number, start = self.window_start(index, rng if self.is_train else None)
        video = self.videos[video_number]
        plan: list[CropPlan] = []

        def convert(frame: av.VideoFrame) -> np.ndarray:
            if not plan:  # planned on the first frame, whose displayed size is the truth
                plan.append(plan_crop(*display_size(frame), self.cfg, self.resolution, self.is_train, rng))
            return apply_plan(frame, plan[0])

        frame_ids = range(start, start + self.span, self.cfg.frame_stride)
        decoded = read_window(video.path, frame_ids, video.record.keyframes, self.cfg.decode_threads, convert)
        clip = to_clip(decoded.frames, plan[0])
        height, width = clip.shape[-2:]
        return {
            "video": clip,
            "video_name": {"path": str(video.path), "start": start},
            "fps": video.record.fps_value / self.cfg.frame_stride,
            "aspect_ratio": plan[0].aspect,
            "image_size": torch.tensor([height, width, height, width], dtype=torch.float32),
            "padding_mask": torch.zeros(1, 1, height, width),
        }
