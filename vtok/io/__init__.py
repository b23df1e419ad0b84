"""Reading and writing videos, images and token files."""

from .errors import MediaError
from .files import IMAGE_SUFFIXES, VIDEO_SUFFIXES, expand_patterns, output_path, output_paths
from .image import read_image, resize_short_side, write_image
from .video import VideoInfo, VideoWriter, iter_frames, probe_video, read_video, write_video

__all__ = [
    "MediaError",
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "expand_patterns",
    "output_path",
    "output_paths",
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
