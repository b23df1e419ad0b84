"""Turning user patterns into a sorted file list, and inputs into output paths that cannot collide."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def expand_patterns(patterns: str | Sequence[str], suffixes: Sequence[str] | None = None) -> list[Path]:
    """Files matched by glob patterns (`**` recurses) or named directly, sorted and without duplicates.

    A directory stands for the files in it with one of `suffixes`. Raises ValueError when nothing matches,
    naming the pattern, so a typo fails before any model is loaded.
    """
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    found: set[Path] = set()
    for pattern in patterns:
        expanded = os.path.expanduser(pattern)
        if os.path.isdir(expanded):
            matches = [
                str(p)
                for p in Path(expanded).iterdir()  # hidden files are temporaries, not inputs
                if p.is_file() and not p.name.startswith(".") and (suffixes is None or p.suffix.lower() in suffixes)
            ]
        else:
            matches = [m for m in glob.glob(expanded, recursive=True) if os.path.isfile(m)]
        if not matches:
            raise ValueError(f"no files match {pattern!r}")
        found.update(Path(m).resolve() for m in matches)
    return sorted(found)


def output_path(
    source: Path,
    sources: Sequence[Path],
    output_dir: Path | None,
    suffix: str,
    tag: str = "",
    default_folder: str = "reconstructions",
) -> Path:
    """Where the output for `source` goes: `output_dir` (default `<source dir>/<default_folder>`) plus the
    source's path relative to the common folder of all `sources`, so same-named files never overwrite
    each other; the suffix is replaced and `tag` appended to the stem (e.g. `_input`)."""
    if output_dir is None:
        relative = Path(source.name)
        output_dir = source.parent / default_folder
    else:
        root = Path(os.path.commonpath([str(s.parent) for s in sources])) if sources else source.parent
        relative = source.relative_to(root)
    return output_dir / relative.with_name(f"{relative.stem}{tag}{suffix}")


def output_paths(
    sources: Sequence[Path], output_dir: Path | None, suffix: str, default_folder: str = "reconstructions"
) -> dict[Path, Path]:
    """`output_path` for every source; ValueError naming them when two would write the same file
    (e.g. `clip.mp4` and `clip.mov` both becoming `clip.mp4`)."""
    targets = {s: output_path(s, sources, output_dir, suffix, default_folder=default_folder) for s in sources}
    seen: dict[Path, Path] = {}
    for source, target in targets.items():
        if target in seen:
            raise ValueError(
                f"{seen[target]} and {source} would both be written to {target}; rename one or process them separately"
            )
        seen[target] = source
    return targets
