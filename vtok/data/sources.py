"""Named datasets (`hdvila_video720`, `mock_video360`, ...), NVIDIA's resolution tables and aspect buckets.

A name is a source plus a resolution (docs/design.md#datasets). The source gives the files (a glob relative to
the working directory, as NVIDIA's `_VIDEO_PATTERN_DICT`), or none for the synthetic `mock`; the resolution only picks
the resize table. A config's own `video_pattern` replaces the source's files, so any folder of videos
trains under any name without a code edit. Note that "360" means a 320-pixel short side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .config import DatasetConfig

SPATIAL_ALIGN = 16
RESOLUTIONS = ("1080", "720", "480", "360", "256")  # the registered ones; the tables also hold 512 and 128

# Source name -> default file pattern, relative to the working directory; None: synthetic clips.
VIDEO_SOURCES: dict[str, str | None] = {
    "hdvila": "datasets/hdvila/videos/*.mp4",
    "mock": None,
}

# Aspect buckets as "W,H" keys, NVIDIA's order.
ASPECT_RATIOS = ("1,1", "4,3", "3,4", "16,9", "9,16")

# (W, H) each clip is resized to cover, per resolution and aspect bucket (NVIDIA's VIDEO_RES_SIZE_INFO).
VIDEO_RES_SIZE_INFO: dict[str, dict[str, tuple[int, int]]] = {
    "1080": {"4,3": (1440, 1072), "3,4": (1072, 1440), "16,9": (1920, 1072), "9,16": (1072, 1920)},
    "720": {"1,1": (720, 720), "4,3": (960, 720), "3,4": (720, 960), "16,9": (1280, 720), "9,16": (720, 1280)},
    "512": {"1,1": (512, 512), "4,3": (672, 512), "3,4": (512, 672), "16,9": (896, 512), "9,16": (512, 896)},
    "480": {"1,1": (480, 480), "4,3": (640, 480), "3,4": (480, 640), "16,9": (854, 480), "9,16": (480, 854)},
    "360": {"1,1": (320, 320), "4,3": (416, 320), "3,4": (320, 416), "16,9": (544, 320), "9,16": (320, 544)},
    "256": {"1,1": (256, 256), "4,3": (320, 256), "3,4": (256, 320), "16,9": (320, 192), "9,16": (192, 320)},
    "128": {"1,1": (256, 256), "4,3": (320, 256), "3,4": (256, 320), "16,9": (448, 256), "9,16": (256, 448)},
}

# (W, H) validation crops when a val config has crop_height=None (NVIDIA's VIDEO_VAL_CROP_SIZE_INFO).
VIDEO_VAL_CROP_SIZE_INFO: dict[str, dict[str, tuple[int, int]]] = {
    "1080": {"4,3": (1424, 1072), "3,4": (1072, 1424), "16,9": (1904, 1072), "9,16": (1072, 1904)},
    "720": {"1,1": (704, 704), "4,3": (944, 704), "3,4": (704, 944), "16,9": (1264, 704), "9,16": (704, 1264)},
    "512": {"1,1": (512, 512), "4,3": (672, 512), "3,4": (512, 672), "16,9": (896, 512), "9,16": (512, 896)},
    "480": {"1,1": (464, 464), "4,3": (624, 464), "3,4": (464, 624), "16,9": (848, 464), "9,16": (464, 848)},
    "360": {"1,1": (320, 320), "4,3": (416, 320), "3,4": (320, 416), "16,9": (544, 320), "9,16": (320, 544)},
    "256": {"1,1": (256, 256), "4,3": (320, 256), "3,4": (256, 320), "16,9": (320, 192), "9,16": (192, 320)},
    "128": {"1,1": (256, 256), "4,3": (320, 256), "3,4": (256, 320), "16,9": (320, 192), "9,16": (192, 320)},
}


@dataclass(frozen=True)
class DatasetName:
    """A parsed `{source}_video{res}` name."""

    source: str
    resolution: str

    def __str__(self) -> str:
        return f"{self.source}_video{self.resolution}"


def dataset_names() -> list[str]:
    """Every registered name, as NVIDIA's registry lists them: each source at each resolution."""
    return [f"{source}_video{res}" for source in VIDEO_SOURCES for res in RESOLUTIONS]


def register_source(name: str, pattern: str) -> None:
    """Add a named source `name` (usable as `{name}_video{res}`) whose files are `pattern`."""
    if not name or "_video" in name:
        raise ValueError(f"a source name must be non-empty and not contain '_video', got {name!r}")
    VIDEO_SOURCES[name] = pattern


def parse_dataset_name(name: str) -> DatasetName:
    """Split `hdvila_video720` into its source and resolution; ValueError listing the valid names."""
    source, sep, res = name.lower().rpartition("_video")
    if not sep or source not in VIDEO_SOURCES or res not in RESOLUTIONS:
        sources = ", ".join(VIDEO_SOURCES)
        raise ValueError(
            f"unknown dataset {name!r}: expected {{source}}_video{{res}} with source in ({sources}) "
            f"and res in ({', '.join(RESOLUTIONS)}), e.g. hdvila_video720"
        )
    return DatasetName(source, res)


def video_patterns(cfg: DatasetConfig) -> list[str] | None:
    """The file patterns a config reads: its own `video_pattern`, else its named source's; None for mock."""
    if cfg.video_pattern:
        return [cfg.video_pattern] if isinstance(cfg.video_pattern, str) else [str(p) for p in cfg.video_pattern]
    pattern = VIDEO_SOURCES[parse_dataset_name(cfg.name).source]
    return None if pattern is None else [pattern]


def is_mock(cfg: DatasetConfig) -> bool:
    """True when the config asks for synthetic clips (a mock name and no files of its own)."""
    return not cfg.video_pattern and VIDEO_SOURCES[parse_dataset_name(cfg.name).source] is None


def get_crop_size_info(crop: int) -> dict[str, tuple[int, int]]:
    """(W, H) crop per aspect bucket for NVIDIA's `crop_height`: the long side is `crop` rounded down to 16,
    the short side `long * ratio` rounded to nearest, then down to 16 (so 256 gives 256x144 for 16:9)."""
    sizes = {}
    for key in ASPECT_RATIOS:
        w, h = (int(v) for v in key.split(","))
        long_side = crop // SPATIAL_ALIGN * SPATIAL_ALIGN
        short_side = int(long_side * min(w, h) / max(w, h) + 0.5) // SPATIAL_ALIGN * SPATIAL_ALIGN
        sizes[key] = (long_side, short_side) if w >= h else (short_side, long_side)
    return sizes


def aspect_bucket(width: int, height: int, keys: Sequence[str] = ASPECT_RATIOS) -> str:
    """The aspect key among `keys` whose W/H ratio is nearest to `width / height` (first one on a tie)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"a frame size must be positive, got {width}x{height}")
    ratio = width / height

    def distance(key: str) -> float:
        w, h = (int(v) for v in key.split(","))
        return abs(ratio - w / h)

    return min(keys, key=distance)


def crop_size(cfg: DatasetConfig, resolution: str, aspect: str) -> tuple[int, int]:
    """(W, H) of the crop for a clip in `aspect`: explicit crop_width x crop_height, NVIDIA's long-side
    table for crop_height alone, or the validation table of the resolution when crop_height is None."""
    if cfg.crop_height is not None and cfg.crop_width is not None:
        return cfg.crop_width, cfg.crop_height
    if cfg.crop_height is not None:
        return get_crop_size_info(cfg.crop_height)[aspect]
    table = VIDEO_VAL_CROP_SIZE_INFO[resolution]
    return table[aspect if aspect in table else aspect_bucket(*_ratio(aspect), keys=tuple(table))]


def resize_size(resolution: str, aspect: str) -> tuple[int, int]:
    """(W, H) the resize step covers for a clip in `aspect` (the nearest bucket the table has: 1080 has no 1:1)."""
    table = VIDEO_RES_SIZE_INFO[resolution]
    return table[aspect if aspect in table else aspect_bucket(*_ratio(aspect), keys=tuple(table))]


def _ratio(aspect: str) -> tuple[int, int]:
    w, h = (int(v) for v in aspect.split(","))
    return w, h
