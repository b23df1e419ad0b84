"""Encoding decoded files (clips.DecodedFile) a batch at a time, writing each file's tokens once all its windows are in.

A batch is windows of one shape that the pipeline would process in one model call (no spatial tiles, no longer
than the temporal window): they go through the model together, padded as the pipeline pads, which gives the
tokens one-at-a-time encoding gives. Any other window is encoded alone through the pipeline.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..io.errors import WriteError, is_storage_full
from ..io.token_shards import ShardWriter
from ..io.tokens import TokenMeta, save_tokens, token_bytes
from .clips import ClipSpec, DecodedFile
from .media import encode_image, encode_video, token_meta
from .per_file import FILE_ERRORS, FileReport, Interrupted
from .pipeline import FrameLayout, Pipeline, to_model_input


def pad_time(x: torch.Tensor, tc: int) -> torch.Tensor:
    """Repeat the last frame until T = 1 + k * tc, as the pipeline pads a window."""
    extra = -(x.shape[2] - 1) % tc
    return torch.cat([x, x[:, :, -1:].expand(-1, -1, extra, -1, -1)], 2) if extra else x


def batchable(pipeline: Pipeline, shape: tuple[int, ...]) -> bool:
    """True when a video window of `shape` `[T,H,W,3]` is one model call in the pipeline (no tiles, one window or
    one stream chunk; NVIDIA's windowing pads in time its own way, so it never batches)."""
    if pipeline.processing not in ("stream", "windows") or not pipeline.temporal_window:
        return False
    tiling = pipeline.tiling
    fits_tile = tiling is None or (tiling.height >= shape[1] and tiling.width >= shape[2])
    return shape[0] <= pipeline.temporal_window and fits_tile


def encode_batch(pipeline: Pipeline, windows: Sequence[Any]) -> tuple[list[torch.Tensor], FrameLayout]:
    """Tokens of equal-shape `batchable` windows in one model call, and their layout."""
    engine = pipeline.engine
    height, width = windows[0].shape[1:3]
    layout = FrameLayout.fit(height, width, engine.sc, pipeline.pad_fill)
    x = torch.cat([to_model_input(w) for w in windows]).to(engine.device)
    tokens = engine.encode(pad_time(layout.pad(x), engine.tc))
    pipeline.last_exact = True  # one pass over each whole window, as an exact stream of it gives
    return [t.cpu() for t in tokens], layout


@dataclass
class Pending:
    """A decoded file whose windows are being encoded."""

    item: DecodedFile
    tokens: list[torch.Tensor | None]
    layout: FrameLayout | None = None
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.error is not None or all(t is not None for t in self.tokens)


def sample_record(meta: TokenMeta, shape: Sequence[int], start: int, settings_id: str) -> dict[str, Any]:
    """A manifest record of one sample (a whole file, or one window): what a trainer needs to pick it."""
    return {
        "source": meta.source,
        "window_start": start,
        "frames": meta.clip_frames or meta.num_frames,
        "fps": meta.fps,
        "token_shape": list(shape),
        "model": meta.model,
        "checkpoint_id": meta.checkpoint_id,
        "settings_id": settings_id,
        "output": "",
    }


def settings_id(settings: dict[str, Any]) -> str:
    """A short fingerprint of the encoding settings (a record's `settings_id`)."""
    return hashlib.sha256(repr(sorted(settings.items())).encode()).hexdigest()[:16]


class FileSink:
    """One `.safetensors` per input (clip mode: its windows stacked on a first axis); records of what it wrote."""

    def __init__(self, targets: dict[Path, Path], output_dir: Path | None, settings_key: str) -> None:
        self.targets, self.output_dir, self.settings_key = targets, output_dir, settings_key

    def output_name(self, target: Path) -> str:
        return str(target.relative_to(self.output_dir)) if self.output_dir else str(target)

    def records(self, target: Path, meta: TokenMeta, shape: Sequence[int]) -> list[dict[str, Any]]:
        starts = meta.clip_starts if meta.clip_frames else [0]
        one = shape[1:] if meta.clip_frames else shape
        rows = [sample_record(meta, one, s, self.settings_key) for s in starts]
        for index, row in enumerate(rows):
            row.update(output=self.output_name(target), **({"window": index} if meta.clip_frames else {}))
        return rows

    def put(self, source: Path, tokens: torch.Tensor, meta: TokenMeta) -> list[dict[str, Any]]:
        target = self.targets[source]
        save_tokens(target, tokens, meta)
        return self.records(target, meta, tokens.shape)

    lost = ""  # what an interruption loses beyond the file in progress

    def close(self) -> list[dict[str, Any]]:
        return []

    def abort(self) -> None:
        pass


class ShardSink:
    """Samples into token shards (io.token_shards); a file is done when the shard holding it is finished."""

    def __init__(self, writer: ShardWriter, settings_key: str) -> None:
        self.writer, self.settings_key = writer, settings_key

    lost = " (nor the files of the unfinished shard)"

    def put(self, source: Path, tokens: torch.Tensor, meta: TokenMeta) -> list[dict[str, Any]]:
        digest = hashlib.sha256(str(source).encode()).hexdigest()[:16]
        samples = []
        if meta.clip_frames:
            for start, window in zip(meta.clip_starts, tokens):
                one = dataclasses.replace(meta, clip_starts=[start])
                record = sample_record(one, window.shape, start, self.settings_key)
                samples.append((f"{digest}_{start:07d}", token_bytes(window, one), record))
        else:
            samples.append((digest, token_bytes(tokens, meta), sample_record(meta, tokens.shape, 0, self.settings_key)))
        return self.writer.add(samples)

    def close(self) -> list[dict[str, Any]]:
        return self.writer.close()

    def abort(self) -> None:
        self.writer.abort()


@dataclass
class EncodeJob:
    """What one rank encodes and how: the pipeline, the checkpoint files named in metadata, windows, batches."""

    pipeline: Pipeline
    checkpoint: list[str]
    clips: ClipSpec = ClipSpec()
    batch_size: int = 1
    encode_file: Callable[..., tuple[torch.Tensor, TokenMeta]] | None = None  # for lazy items (default: media's)
    records: list[dict[str, Any]] = field(default_factory=list)

    def meta_of(self, pending: Pending) -> tuple[torch.Tensor, TokenMeta]:
        item, tokens = pending.item, pending.tokens
        assert pending.layout is not None
        if item.media == "image":
            args = ("image", "", 1, item.source_size, self.checkpoint)
            return tokens[0], token_meta(self.pipeline, item.source, pending.layout, *args)
        frames = self.clips.frames or item.num_frames
        args = ("video", item.fps, frames, item.source_size, self.checkpoint)
        meta = token_meta(self.pipeline, item.source, pending.layout, *args)
        if not self.clips.frames:
            return tokens[0], meta
        meta = dataclasses.replace(
            meta, clip_frames=self.clips.frames, clip_stride=self.clips.stride, clip_starts=list(item.starts)
        )
        return torch.stack(tokens), meta  # type: ignore[arg-type]

    def encode_pending(self, batch: list[Pending]) -> None:
        """Fill in the tokens of every window of `batch`, equal shapes together, `batch_size` at a time."""
        groups: dict[tuple[int, ...], list[tuple[Pending, int]]] = {}
        for pending in batch:
            for index, window in enumerate(pending.item.windows or []):
                if pending.tokens[index] is None and pending.error is None:
                    groups.setdefault(tuple(window.shape), []).append((pending, index))
        for shape, members in groups.items():
            video = members[0][0].item.media == "video"
            size = self.batch_size if video and batchable(self.pipeline, shape) else 1
            for begin in range(0, len(members), size):
                self._encode_members(members[begin : begin + size], size > 1)

    def _encode_members(self, members: list[tuple[Pending, int]], batched: bool) -> None:
        windows = [p.item.windows[i] for p, i in members]  # type: ignore[index]
        try:
            if batched:
                tokens, layout = encode_batch(self.pipeline, windows)
            elif members[0][0].item.media == "image":
                token, layout = self.pipeline.encode_image(windows[0][0])
                tokens = [token]
            else:
                token, layout, _ = self.pipeline.encode(iter(windows[0]))
                tokens = [token]
        except FILE_ERRORS as err:
            if batched:  # name the window that fails, not the batch
                for member in members:
                    self._encode_members([member], False)
                return
            members[0][0].error = str(err).splitlines()[0]
            return
        for (pending, index), token in zip(members, tokens):
            pending.tokens[index], pending.layout = token, layout

    def encode_lazy(self, item: DecodedFile) -> tuple[torch.Tensor, TokenMeta]:
        """A file the main process streams through the model (vtok.inference.media's one-file functions)."""
        encode = self.encode_file or (encode_image if item.media == "image" else encode_video)
        return encode(self.pipeline, item.source, self.checkpoint)


def run_encode(
    job: EncodeJob,
    items: Iterable[DecodedFile],
    total: int,
    sink: FileSink | ShardSink,
    report: FileReport,
    desc: str = "encode",
    position: int = 0,
    on_progress: Callable[[FileReport, int, int, float], None] | None = None,
) -> FileReport:
    """Encode and write every item, filling `report` (and `job.records`) as files finish; see per_file for what
    stops the run (a full disk, Ctrl-C) and what is only one file's failure."""
    pending: list[Pending] = []
    frames_done = samples_done = 0
    started = time.monotonic()

    def finish(records: list[dict[str, Any]]) -> None:
        nonlocal frames_done, samples_done
        job.records.extend(records)
        samples_done += len(records)
        for source in dict.fromkeys(Path(r["source"]) for r in records):
            report.done.append(source)
            bar.update()
        frames_done += sum(r["frames"] for r in records)
        if on_progress is not None:
            on_progress(report, samples_done, frames_done, time.monotonic() - started)

    def fail(source: Path, reason: str) -> None:
        report.failed.append((source, reason))
        tqdm.write(f"vtok: skipped {source}: {reason}")
        bar.update()
        if on_progress is not None:
            on_progress(report, samples_done, frames_done, time.monotonic() - started)

    def write(ready: list[Pending]) -> None:
        for done in ready:
            source = done.item.source
            if done.error is not None:
                fail(source, done.error)
                continue
            try:
                finish(sink.put(source, *job.meta_of(done)))
            except WriteError as err:
                if is_storage_full(err):
                    err.note = f"{err.note or 'nothing was written under that name'}; {report.kept(total)} and kept"
                    raise
                fail(source, str(err))

    with tqdm(total=total, desc=desc, unit="file", dynamic_ncols=True, position=position) as bar:
        current: Path | None = None
        try:
            for item in items:
                current = item.source
                bar.set_postfix_str(item.source.name, refresh=False)
                if item.error is not None:
                    fail(item.source, item.error)
                elif item.windows is None:
                    try:
                        finish(sink.put(item.source, *job.encode_lazy(item)))
                    except WriteError as err:
                        if is_storage_full(err):
                            err.note = f"{err.note or 'nothing was written'}; {report.kept(total)} and kept"
                            raise
                        fail(item.source, str(err))
                    except FILE_ERRORS as err:
                        fail(item.source, getattr(err, "reason", None) or str(err).splitlines()[0])
                else:
                    pending.append(Pending(item, [None] * len(item.windows)))
                    if sum(len(p.tokens) for p in pending) >= job.batch_size:
                        job.encode_pending(pending)
                        write(pending)
                        pending = []
            job.encode_pending(pending)
            write(pending)
            pending = []
            finish(sink.close())
        except KeyboardInterrupt:
            sink.abort()
            raise Interrupted(
                f"{desc} stopped during {current}, which was not written{sink.lost}; {report.kept(total)} and kept; "
                "rerun the same command to continue (finished files are skipped)",
                current,
            ) from None
        except BaseException:
            sink.abort()
            raise
    return report
