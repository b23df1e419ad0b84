"""Typed settings of a training dataset and its loader, with NVIDIA's key names so their overrides carry over.

`dataloader_train.dataset.video_pattern='my/*.mp4'`, `dataloader_train.batch_size=2` and the like name fields
here. These are plain dataclasses; parsing `key=value` overrides into them is the trainer's job.

About `crop_height` (docs/design.md#datasets): NVIDIA's `crop_height` is really the crop's *long* side. With
`crop_height=256` a 16:9 clip is cropped to 256 wide x 144 high and a 9:16 clip to 144 x 256, so the crop
follows each clip's aspect ratio. vtok keeps that meaning when `crop_width` is None. Set both `crop_height`
and `crop_width` to get exactly that height and width for every clip, whatever its aspect ratio.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MOCK_CONTENTS = ("uniform", "shapes")


@dataclass
class AugmentConfig:
    """NVIDIA's training augmentations, with every probability honoured (NVIDIA ignores the flip's)."""

    raw_crop_prob: float = 0.1  # crop at the source resolution, without resizing, when the frame is large enough
    reverse_prob: float = 0.5  # play the window backwards
    flip_enabled: bool = True
    flip_prob: float = 0.5  # mirror left-right

    def validate(self) -> None:
        """ValueError naming the first probability outside [0, 1]."""
        for name in ("raw_crop_prob", "reverse_prob", "flip_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"augment.{name} must be between 0 and 1, got {value}")


@dataclass
class DatasetConfig:
    """One dataset: which videos, which windows of them, and how they are cropped."""

    name: str = "hdvila_video720"  # `{source}_video{res}`: source in vtok.data.sources, res picks the resize table
    video_pattern: str | list[str] | None = None  # glob(s) or folder(s); overrides the named source's files
    num_video_frames: int = 25  # frames per window
    crop_height: int | None = 128  # NVIDIA's meaning: the crop's long side (see the module docstring)
    crop_width: int | None = None  # with crop_height: an explicit crop of crop_width x crop_height for every clip
    frame_stride: int = 1  # take every n-th source frame (the clip's fps is the source's / frame_stride)
    start_interval: int | None = None  # frames between window starts; None: half a window (see video_dataset)
    val_fraction: float = 0.1  # videos held out for validation, by a hash of the file name; 0: no split
    seed: int | None = None  # augmentation seed; None: the seed given to build_dataloader
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    manifest: str | None = None  # a manifest written by `vtok index --output`; None: <folder>/vtok_manifest.json
    write_manifest: bool = True  # save what start-up probed, so the next start-up reuses it
    probe_workers: int = 8  # threads that probe videos missing from the manifest
    decode_threads: int = 1  # FFmpeg threads per loader worker: 1 when workers fill the cores; 0: FFmpeg's choice
    max_consecutive_failures: int = 100  # unreadable windows in a row before a sample gives up with an error
    mock_length: int = 32768  # samples per epoch of a mock source, as NVIDIA's
    mock_content: str = "uniform"  # mock clips: "uniform" noise as NVIDIA, or "shapes" moving over a gradient

    def validate(self) -> None:
        """ValueError naming the first setting that cannot work."""
        if self.num_video_frames < 1:
            raise ValueError(f"num_video_frames must be at least 1, got {self.num_video_frames}")
        if self.frame_stride < 1:
            raise ValueError(f"frame_stride must be at least 1, got {self.frame_stride}")
        if self.start_interval is not None and self.start_interval < 1:
            raise ValueError(f"start_interval must be at least 1 (None: half a window), got {self.start_interval}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.crop_width is not None and self.crop_height is None:
            raise ValueError("crop_width needs crop_height: set both for an explicit crop, or only crop_height")
        for key in ("crop_height", "crop_width"):
            value = getattr(self, key)
            if value is not None and value < 16:
                raise ValueError(f"{key} must be at least 16, got {value}")
        if self.crop_width is not None and (self.crop_width % 8 or self.crop_height % 8):
            raise ValueError(
                f"an explicit crop must be a multiple of 8 in both sides (the tokenizers' spatial "
                f"compression), got {self.crop_width}x{self.crop_height}"
            )
        if self.mock_content not in MOCK_CONTENTS:
            raise ValueError(f"mock_content must be one of {', '.join(MOCK_CONTENTS)}, got {self.mock_content!r}")
        if self.max_consecutive_failures < 1:
            raise ValueError(f"max_consecutive_failures must be at least 1, got {self.max_consecutive_failures}")
        self.augment.validate()

    @property
    def window_span(self) -> int:
        """Source frames one window covers, first to last."""
        return (self.num_video_frames - 1) * self.frame_stride + 1


@dataclass
class LoaderConfig:
    """A DataLoader over one dataset (NVIDIA's defaults: batch 1, 8 workers, prefetch 2, pinned memory)."""

    batch_size: int = 1
    num_workers: int = 8
    prefetch_factor: int = 2
    pin_memory: bool = True  # used only when CUDA is available
    dataset: DatasetConfig = field(default_factory=DatasetConfig)

    def validate(self) -> None:
        """ValueError naming the first setting that cannot work."""
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be 0 or more, got {self.num_workers}")
        if self.prefetch_factor < 1:
            raise ValueError(f"prefetch_factor must be at least 1, got {self.prefetch_factor}")
        self.dataset.validate()
