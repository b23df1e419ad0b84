"""Image files through Pillow: EXIF orientation applied, grayscale and alpha turned into RGB, atomic writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .atomic import atomic_path
from .errors import MediaError


def read_image(path: str | Path) -> np.ndarray:
    """uint8 RGB `[H, W, 3]` as a viewer shows the image; MediaError when it is not a readable image."""
    path = Path(path)
    if not path.exists():
        raise MediaError(path, "no such file")
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            if image.mode.startswith("I;16"):  # 16-bit grayscale: Pillow's convert("RGB") would clip, not scale
                gray = (np.asarray(image).astype(np.uint32) * 255 + 32767) // 65535
                return np.repeat(gray.astype(np.uint8)[..., None], 3, axis=-1)
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as err:
        raise MediaError(path, f"not a readable image ({err})") from err


def write_image(path: str | Path, image: np.ndarray) -> Path:
    """Write uint8 RGB `[H, W, 3]`; the format follows the suffix (PNG, JPEG, ...); atomic."""
    path = Path(path)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"write_image takes uint8 RGB [H,W,3], got {image.dtype} {list(image.shape)}")
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"))
    return path


def resize_short_side(frame: np.ndarray, short_size: int) -> np.ndarray:
    """Resize so the short side is `short_size` and the long side keeps the aspect, rounded up to even.

    Same sizes as NVIDIA's `resize_video` (Lanczos, per frame), so results compare with theirs.
    """
    height, width = frame.shape[:2]
    scale = short_size / min(height, width)
    long_side = int(max(height, width) * scale + 0.5)
    long_side += long_side % 2
    size = (short_size, long_side) if height <= width else (long_side, short_size)
    if size == (height, width):  # NVIDIA resizes an odd long side to even even when the short side matches
        return frame
    resized = Image.fromarray(frame).resize((size[1], size[0]), resample=Image.Resampling.LANCZOS)
    return np.asarray(resized)
