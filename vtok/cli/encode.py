"""`vtok encode`: pre-tokenize videos or images to one `.safetensors` file each, resumable."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from ..inference.batch_encode import EncodeJob, FileSink, ShardSink, run_encode, settings_id
from ..inference.clips import DecodeDataset, decode_loader
from ..inference.media import encode_image, encode_video, encoding_settings
from ..inference.per_file import FileReport
from ..inference.run_parts import (
    RankProgress,
    merge_parts,
    read_parts,
    remove_part,
    run_identity,
    wait_for_parts,
    write_part,
)
from ..inference.sharding import frame_counts, rank_of, split_by_frames
from ..io import IMAGE_SUFFIXES, VIDEO_SUFFIXES, OutputPlan, expand_patterns, output_path, output_root
from ..io.token_shards import MANIFEST_FILE, ShardWriter, existing_shards, is_token_manifest, shard_records
from ..io.tokens import encoding_differences, is_complete, read_token_meta, token_shape
from .encode_scale import add_scale_args, check_scale_args, clip_spec, rank_device
from .inference_args import add_checkpoint_args, add_processing_args, engine_from_args, pipeline_from_args

DEFAULT_SHARD_SIZE = 1 << 30


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "encode",
        help="tokenize videos/images to .safetensors (latents or int32 indices)",
        description="Write, for every input, one .safetensors file with its continuous latent `latent` "
        "[C,t,h,w] or discrete token indices `indices` [t,h,w] (int32, in [0, 64000)), plus what `vtok decode` "
        "needs (model, fps, frame count, size, padding) as metadata. Files already written with the same model, "
        "checkpoint and settings are skipped, so an interrupted run continues where it stopped (files made "
        "otherwise are refused unless --overwrite); files are written atomically.",
        epilog="example: vtok encode --video_pattern 'datasets/hdvila/videos/*.mp4' "
        "--checkpoint_enc checkpoints/Cosmos-Tokenize1-DV8x16x16-720p/encoder.jit --output_dir tokens/",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--video_pattern", help="glob of input videos (quote it)")
    source.add_argument("--image_pattern", help="glob of input images")
    add_checkpoint_args(p, required_parts="encoder")
    add_processing_args(p)
    p.add_argument(
        "--output_dir",
        type=Path,
        default=None,
        help="where to write (default: a tokens/ folder beside each input); sub-folders mirror the inputs'",
    )
    p.add_argument("--overwrite", action="store_true", help="re-encode inputs whose token file already exists")
    add_scale_args(p)
    p.set_defaults(func=run)


def stale_tokens(targets: dict[Path, Path], settings: dict[str, Any]) -> str | None:
    """One line naming the existing token files that another model, checkpoint or setting made, or None."""
    stale = []
    for target in targets.values():
        if is_complete(target):
            differ = encoding_differences(read_token_meta(target), settings)
            if differ:
                stale.append((target, differ))
    if not stale:
        return None
    (first, differ), others = stale[0], len(stale) - 1
    more = f" (and {others} more file(s))" if others else ""
    return (
        f"{len(stale)} token file(s) already in the output were made with other settings, and skipping them would "
        f"keep stale tokens: {first} differs in {', '.join(differ)}{more}; pass --overwrite to re-encode them, or "
        "choose another --output_dir"
    )


def run(args: argparse.Namespace) -> int:
    images = args.image_pattern is not None
    files = expand_patterns(
        args.image_pattern if images else args.video_pattern, IMAGE_SUFFIXES if images else VIDEO_SUFFIXES
    )
    rank = rank_of(args.shard)
    clips = clip_spec(args, images)
    check_scale_args(args, rank)
    shards = args.format == "shards"
    plan = OutputPlan("tokens", files, "encode", owned=lambda p: is_complete(p) or is_token_manifest(p))
    targets = {}
    if not shards:
        targets = {
            f: plan.add(
                output_path(f, files, args.output_dir, ".safetensors", default_folder="tokens"),
                str(f),
                output_root(f, args.output_dir, "tokens"),
            )
            for f in files
        }
    if args.output_dir is not None:
        plan.add(args.output_dir / MANIFEST_FILE, "the merged manifest", args.output_dir)
    plan.check()
    mine = files
    if rank.count > 1:
        mine = split_by_frames(files, frame_counts(files, args.manifest, videos=not images), rank.count)[rank.index]
    rank_device(args, rank)
    engine = engine_from_args(args)
    if args.compile:
        engine.encode_fn = torch.compile(engine.encode_fn)
    pipeline = pipeline_from_args(args, engine)
    settings = {**encoding_settings(pipeline), "clip_frames": clips.frames, "clip_stride": clips.stride}
    if not args.overwrite and not shards:  # a finished file is skipped only when this run would write the same tokens
        stale = stale_tokens({f: targets[f] for f in mine}, settings)
        if stale:
            raise ValueError(stale)
    key = settings_id(settings)
    finished = finished_in_shards(args.output_dir, key) if shards else {}
    plan.prepare()
    checkpoint = [str(p) for p in (args.checkpoint, args.checkpoint_enc) if p is not None]
    run_id = run_identity(files, settings, rank.count, args.format)
    if args.output_dir is not None:
        remove_part(args.output_dir, rank)
    if shards:
        sink = ShardSink(ShardWriter(args.output_dir, rank.index, args.shard_size or DEFAULT_SHARD_SIZE), key)
    else:
        sink = FileSink(targets, args.output_dir, key)
    job = EncodeJob(pipeline, checkpoint, clips, args.batch_size, encode_image if images else encode_video)
    report = FileReport()
    todo = []
    for source in mine:
        if shards and str(source) in finished:
            report.skipped.append(source)
            job.records += finished[str(source)]
        elif not shards and not args.overwrite and is_complete(targets[source]):
            meta = read_token_meta(targets[source])
            report.skipped.append(source)
            job.records += sink.records(targets[source], meta, token_shape(targets[source], meta))
        else:
            todo.append(source)
    lazy = args.num_workers == 0 and args.batch_size == 1 and not clips.frames
    dataset = DecodeDataset(todo, "image" if images else "video", args.short_size, clips, lazy)
    where = f", {len(mine)} of them on {rank.label}" if rank.count > 1 else ""
    print(f"{engine.name} ({engine.describe()}): {len(files)} file(s){where}")
    desc = f"encode {rank.label}" if rank.count > 1 else "encode"
    progress = RankProgress(args.output_dir, rank, run_id, len(todo)) if rank.count > 1 else None
    loader = decode_loader(dataset, args.num_workers, args.prefetch)
    run_encode(job, loader, len(todo), sink, report, desc, rank.local_index, progress)
    report.done.sort()
    if rank.count == 1 or not rank.torchrun:
        print(report.summary(desc))
    if args.output_dir is None:
        return report.exit_code
    write_part(args.output_dir, rank, run_id, job.records, report)
    parts = wait_for_parts(args.output_dir, rank, run_id) if rank.torchrun and rank.index == 0 else None
    if parts is None and not rank.torchrun:
        parts = read_parts(args.output_dir, rank, run_id)
    if parts is None:
        return 0 if rank.torchrun else report.exit_code
    manifest, merged = merge_parts(args.output_dir, parts)
    if rank.count > 1:
        print(merged.summary(f"encode, all {rank.count} ranks"))
    print(f"wrote {manifest} ({sum(len(p['records']) for p in parts)} samples)")
    return merged.exit_code if rank.torchrun else report.exit_code


def finished_in_shards(output_dir: Path, key: str) -> dict[str, list[dict[str, Any]]]:
    """The records of each source already in a finished shard of `output_dir`; ValueError in one line when a shard
    there was made with other settings (skipping its sources would keep stale tokens)."""
    finished: dict[str, list[dict[str, Any]]] = {}
    for shard in existing_shards(output_dir):
        for record in shard_records(shard):
            if record.get("settings_id") != key:
                raise ValueError(
                    f"{shard} holds tokens made with another model, checkpoint or settings; choose another "
                    "--output_dir (finished shards are never rewritten)"
                )
            finished.setdefault(record["source"], []).append(record)
    return finished
