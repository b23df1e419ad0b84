"""Reading and writing videos, images and token files; patterns, planned outputs and atomic writes."""

from .errors import MediaError, WriteError
from .files import (
    IMAGE_SUFFIXES,
    TOKEN_SUFFIXES,
    VIDEO_SUFFIXES,
    OutputPlan,
    check_writable_folder,
    expand_patterns,
    files_identity,
    output_path,
    output_root,
)
from .image import read_image, resize_short_side, write_image
from .video import VideoInfo, VideoWriter, iter_frames, probe_video, read_video, write_video

__all__ = [
    "MediaError",
    "WriteError",
    "IMAGE_SUFFIXES",
    "TOKEN_SUFFIXES",
    "VIDEO_SUFFIXES",
    "OutputPlan",
    "check_writable_folder",
    "expand_patterns",
    "files_identity",
    "output_path",
    "output_root",
    "read_image",
    "resize_short_side",
    "write_image",
    "VideoInfo",
    "VideoWriter",
    "iter_frames",
    "probe_video",
    "read_video",
    "write_video",
]
