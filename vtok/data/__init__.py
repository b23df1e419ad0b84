"""Training data: named datasets, video manifests, seek-decoded windows with NVIDIA's augmentations, loaders."""

from .config import AugmentConfig, DatasetConfig, LoaderConfig
from .decode import read_window
from .loader import build_dataloader, build_dataset, set_epoch
from .manifest import MANIFEST_NAME, Manifest, VideoRecord, find_videos, index_videos, probe_record
from .mock import MockVideoDataset
from .sources import (
    VIDEO_RES_SIZE_INFO,
    VIDEO_SOURCES,
    VIDEO_VAL_CROP_SIZE_INFO,
    aspect_bucket,
    dataset_names,
    get_crop_size_info,
    parse_dataset_name,
    register_source,
)
from .token_dataset import TokenDataset, collate_tokens
from .video_dataset import VideoWindowDataset, split_videos

__all__ = [
    "AugmentConfig",
    "DatasetConfig",
    "LoaderConfig",
    "read_window",
    "build_dataloader",
    "build_dataset",
    "set_epoch",
    "MANIFEST_NAME",
    "Manifest",
    "VideoRecord",
    "find_videos",
    "index_videos",
    "probe_record",
    "MockVideoDataset",
    "VIDEO_RES_SIZE_INFO",
    "VIDEO_SOURCES",
    "VIDEO_VAL_CROP_SIZE_INFO",
    "aspect_bucket",
    "dataset_names",
    "get_crop_size_info",
    "parse_dataset_name",
    "register_source",
    "TokenDataset",
    "collate_tokens",
    "VideoWindowDataset",
    "split_videos",
]
