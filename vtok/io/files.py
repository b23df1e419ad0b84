"""Inputs and outputs on disk: user patterns into a sorted file list, and every output planned before any work.

Patterns: a pattern that names an existing file or folder is that file or folder, glob characters and all
(`clip[1].mp4`). Otherwise it is a glob whose `**` matches any number of folders; the walk enters each real folder
once (a symlink loop ends), skips hidden folders, and skips vtok's own output folders (`reconstructions/`,
`decoded/`, `tokens/` and any folder holding OUTPUT_MARK) that a wildcard reaches, so a rerun never takes its own
outputs as inputs; token folders are kept when the pattern asks for token files (`vtok decode`'s inputs). A
folder named without wildcards is always entered.

Outputs: a writing command lists every file it will write in an `OutputPlan` and checks it before loading a model:
no output is one of the inputs, no two outputs share a path, no output replaces a file vtok did not write (one in a
folder vtok marked as its output folder, or one the command recognises as its own), and every output folder can be
made. `prepare` then makes the folders and marks the ones vtok made.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
TOKEN_SUFFIXES = (".safetensors",)

OUTPUT_MARK = ".vtok-output"  # in an output folder vtok made: what it holds ("media", "tokens", "models")
DEFAULT_OUTPUT_FOLDERS = {"reconstructions": "media", "decoded": "media", "tokens": "tokens"}
WILDCARDS = re.compile(r"[*?[]")


# ----------------------------------------------------------------------------------------------- patterns
def output_folder_kind(folder: Path) -> str | None:
    """What vtok wrote into `folder` ("media", "tokens", "models") when it is one of its output folders, else None."""
    mark = folder / OUTPUT_MARK
    if mark.is_file():
        try:
            words = mark.read_text().split()
        except OSError:
            words = []
        return words[0] if words else "media"
    return DEFAULT_OUTPUT_FOLDERS.get(folder.name)


def _entries(folder: str) -> list[os.DirEntry]:
    try:
        with os.scandir(folder or ".") as it:
            return list(it)
    except OSError:  # unreadable or vanished: glob ignores these too
        return []


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


class _Walk:
    """The files a glob's components match below a folder, each real folder visited once per remaining pattern."""

    def __init__(self, keep_kinds: set[str]) -> None:
        self.keep_kinds = keep_kinds
        self.seen: set[tuple[str, int]] = set()
        self.skipped_outputs = 0

    def _enter(self, path: str, remaining: int) -> bool:
        key = (os.path.realpath(path), remaining)
        if key in self.seen:
            return False
        self.seen.add(key)
        return True

    def _wild_dir_ok(self, path: str, name: str, pattern: str) -> bool:
        """A folder reached through a wildcard: not hidden (unless the pattern says so), not vtok's output."""
        if name.startswith(".") and not pattern.startswith("."):
            return False
        kind = output_folder_kind(Path(path))
        if kind is not None and kind not in self.keep_kinds:
            self.skipped_outputs += 1
            return False
        return True

    def files(self, folder: str, parts: Sequence[str]) -> Iterator[str]:
        if not parts or not self._enter(folder or ".", len(parts)):
            return
        head, rest = parts[0], parts[1:]
        if head == "**":
            if rest:
                yield from self.files(folder, rest)  # `**` matching no folder
            for entry in _entries(folder):
                if _is_dir(entry) and self._wild_dir_ok(entry.path, entry.name, "*"):
                    yield from self.files(entry.path, parts)
                elif not rest and _is_file(entry) and not entry.name.startswith("."):
                    yield entry.path
            return
        if not WILDCARDS.search(head):
            path = os.path.join(folder, head)
            if not rest:
                if os.path.isfile(path):
                    yield path
            elif os.path.isdir(path):
                yield from self.files(path, rest)
            return
        for entry in _entries(folder):
            if not fnmatch.fnmatchcase(entry.name, head):
                continue
            if rest:
                if _is_dir(entry) and self._wild_dir_ok(entry.path, entry.name, head):
                    yield from self.files(entry.path, rest)
            elif _is_file(entry) and (not entry.name.startswith(".") or head.startswith(".")):
                yield entry.path


def _glob(pattern: str, keep_kinds: set[str]) -> tuple[list[str], int]:
    """Files matching `pattern` and the number of vtok output folders left out."""
    absolute = pattern.startswith(os.sep)
    parts = [p for p in pattern.split(os.sep) if p not in ("", ".")]
    first_wild = next((i for i, p in enumerate(parts) if WILDCARDS.search(p)), len(parts))
    root = os.sep.join(parts[:first_wild])
    root = (os.sep + root) if absolute else root
    walk = _Walk(keep_kinds)
    found = list(walk.files(root, parts[first_wild:])) if first_wild < len(parts) else []
    return found, walk.skipped_outputs


def expand_patterns(patterns: str | Sequence[str], suffixes: Sequence[str] | None = None) -> list[Path]:
    """Files matched by glob patterns (`**` recurses) or named directly, sorted and without duplicates.

    A directory stands for the files in it with one of `suffixes`. Raises ValueError when nothing matches,
    naming the pattern, so a typo fails before any model is loaded.
    """
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    keep_kinds = {"tokens"} if suffixes is not None and set(suffixes) <= set(TOKEN_SUFFIXES) else set()
    found: set[Path] = set()
    for pattern in patterns:
        expanded = os.path.expanduser(pattern)
        skipped = 0
        if os.path.isdir(expanded):
            matches = [
                str(p)
                for p in Path(expanded).iterdir()  # hidden files are temporaries, not inputs
                if p.is_file() and not p.name.startswith(".") and (suffixes is None or p.suffix.lower() in suffixes)
            ]
        elif os.path.isfile(expanded):  # an existing file is itself, even with [ ] * ? in its name
            matches = [expanded]
        else:
            matches, skipped = _glob(expanded, keep_kinds)
        if not matches:
            left_out = f" ({skipped} of vtok's output folders left out)" if skipped else ""
            raise ValueError(f"no files match {pattern!r}{left_out}")
        found.update(Path(m).resolve() for m in matches)
    return sorted(found)


# ----------------------------------------------------------------------------------------------- output paths
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


def output_root(source: Path, output_dir: Path | None, default_folder: str = "reconstructions") -> Path:
    """The output folder `output_path` writes `source`'s output under."""
    return output_dir if output_dir is not None else source.parent / default_folder


# ----------------------------------------------------------------------------------------------- folders
def unwritable_reason(folder: Path) -> str | None:
    """Why `folder` cannot be made or written to (a parent is a file, no permission, a read-only disk), or None.

    Nothing is created: the nearest existing ancestor is checked, so a command can refuse before any work."""
    folder = Path(os.path.abspath(folder))
    probe = folder
    while not probe.exists():
        if probe.is_symlink():
            return f"{probe} is a broken symbolic link"
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a folder" if probe == folder else f"{probe}, one of its parents, is a file"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"no permission to write in {probe}" if probe == folder else f"no permission to create it in {probe}"
    return None


def check_writable_folder(folder: Path) -> None:
    """ValueError in one line when `folder` cannot be made or written to (see `unwritable_reason`)."""
    reason = unwritable_reason(folder)
    if reason is not None:
        raise ValueError(f"cannot write to {folder}: {reason}")


def mark_output_folder(folder: Path, kind: str, command: str) -> None:
    """Make `folder` and mark it as vtok's when vtok makes it (or finds it empty); leave a user's folder unmarked."""
    folder = Path(folder)
    fresh = not folder.exists() or not any(folder.iterdir())
    folder.mkdir(parents=True, exist_ok=True)
    if fresh and not (folder / OUTPUT_MARK).exists():
        (folder / OUTPUT_MARK).write_text(
            f"{kind}\nwritten by `vtok {command}`: vtok may replace its own files here, and its input patterns "
            "skip this folder\n"
        )


def _is_vtok_folder(folder: Path) -> bool:
    return (folder / OUTPUT_MARK).is_file()


# ----------------------------------------------------------------------------------------------- the plan
@dataclass
class _Output:
    path: Path  # absolute
    what: str
    root: Path | None


@dataclass
class OutputPlan:
    """Every file one command will write, checked before any model work (see the module docstring).

    `kind` is what the folders will hold ("media", "tokens", "models"), written into the mark of those vtok makes;
    `owned(path)` recognises an existing file as vtok's own by its contents (a token file, an exported jit)."""

    kind: str
    inputs: Sequence[Path] = ()
    command: str = ""
    owned: Callable[[Path], bool] | None = None
    outputs: list[_Output] = field(default_factory=list)

    def add(self, path: Path, what: str, root: Path | None = None) -> Path:
        """Plan `path` (described as `what` in messages, e.g. the input it comes from) under output folder `root`."""
        self.outputs.append(_Output(Path(os.path.abspath(path)), what, None if root is None else Path(root)))
        return Path(path)

    @property
    def roots(self) -> list[Path]:
        return sorted({o.root for o in self.outputs if o.root is not None})

    def check_collisions(self) -> None:
        """ValueError when two planned outputs are one file."""
        seen: dict[Path, _Output] = {}
        for out in self.outputs:
            key = Path(os.path.realpath(out.path))
            if key in seen:
                raise ValueError(
                    f"{seen[key].what} and {out.what} would both be written to {out.path}; "
                    "rename one or process them separately"
                )
            seen[key] = out

    def check(self) -> None:
        """Refuse, in one line, an output folder that cannot be made, two outputs on one path, an output that is an
        input, and an output that would replace a file vtok did not write."""
        for root in self.roots:
            check_writable_folder(root)
        self.check_collisions()
        inputs = {Path(os.path.realpath(p)): p for p in self.inputs}
        identities = {_identity(p): p for p in self.inputs if _identity(p) is not None}
        for out in self.outputs:
            source = inputs.get(Path(os.path.realpath(out.path)))
            if source is None and out.path.exists():
                source = identities.get(_identity(out.path))  # the same file under another name (a hard link)
            if source is not None:
                raise ValueError(
                    f"{out.path} is an input, and {out.what} would be written over it; choose another --output_dir"
                )
        for out in self.outputs:
            check_writable_folder(out.path.parent)
            self._check_replaceable(out)

    def _check_replaceable(self, out: _Output) -> None:
        path = out.path
        if not (path.exists() or path.is_symlink()):
            return
        if path.is_dir():
            raise ValueError(f"{out.what} would be written to {path}, which is a folder")
        if self.owned is not None and self.owned(path):
            return
        if any(_is_vtok_folder(folder) for folder in _folders_up_to(path.parent, out.root)):
            return
        raise ValueError(
            f"{path} exists and vtok did not write it; vtok never overwrites a file it did not create: move it "
            "away, or choose another --output_dir"
        )

    def prepare(self) -> None:
        """Make every output folder, marking those vtok makes; call after the model loads, before writing."""
        for root in self.roots:
            mark_output_folder(root, self.kind, self.command)


def _folders_up_to(folder: Path, root: Path | None) -> Iterator[Path]:
    """`folder` and its parents up to `root` (only `folder` without one)."""
    folder = Path(os.path.abspath(folder))
    top = Path(os.path.abspath(root)) if root is not None else folder
    yield folder
    while folder != top and top in folder.parents:
        folder = folder.parent
        yield folder


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


# ----------------------------------------------------------------------------------------------- identity
HEAD_BYTES = 1 << 16
TAIL_BYTES = 1 << 20  # a zip archive's (.pt, .jit) central directory, with the CRC32 of every entry, is at its end


def files_identity(paths: Iterable[Path]) -> str:
    """A short fingerprint of files' contents, from their sizes, first 64 KiB and last 1 MiB: cheap on a
    multi-GB checkpoint, unchanged by copying or renaming, changed by any retraining (zip archives end with a
    CRC32 of every tensor)."""
    digests = []
    for path in paths:
        digest = hashlib.sha256()
        size = Path(path).stat().st_size
        digest.update(str(size).encode())
        with open(path, "rb") as handle:
            digest.update(handle.read(HEAD_BYTES))
            handle.seek(max(HEAD_BYTES, size - TAIL_BYTES))
            digest.update(handle.read(TAIL_BYTES))
        digests.append(digest.hexdigest())
    return hashlib.sha256("".join(sorted(digests)).encode()).hexdigest()[:16]
