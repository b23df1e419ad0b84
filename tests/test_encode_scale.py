"""`vtok encode` at dataset scale: torchrun and `--shard I/N` ranks, a killed rank rerun, decode workers and batches,
clip windows, tar shards read back through TokenDataset; on generated mp4s and a tiny random-weight DV model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import small_tokenizer, synthetic_frames, vtok_cli

from vtok.checkpoint.state_dict import training_state_dict
from vtok.cli.main import main
from vtok.data import TokenDataset, index_videos
from vtok.inference import Pipeline, TokenizerEngine, load_engine
from vtok.inference.batch_encode import batchable, encode_batch
from vtok.inference.clips import ClipSpec, clip_windows
from vtok.inference.sharding import frame_counts, parse_shard, rank_of, split_by_frames
from vtok.io import read_video, write_video
from vtok.io.token_shards import existing_shards, read_manifest
from vtok.io.tokens import load_tokens

pytestmark = pytest.mark.slow

FRAMES = {"v0.mp4": 9, "v1.mp4": 13, "v2.mp4": 17, "v3.mp4": 9, "v4.mp4": 21, "v5.mp4": 5}
UNREADABLE = ("broken.mp4", "empty.mp4")
TINY = ("--dtype", "float32", "--temporal_window", "9")


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """clips/ with six short videos and two unreadable files; dv.pt, a random DV4x8x8 training checkpoint."""
    root = tmp_path_factory.mktemp("scale")
    for k, (name, frames) in enumerate(FRAMES.items()):
        write_video(root / "clips" / name, synthetic_frames(frames, 32, 40, seed=k), Fraction(24))
    (root / "clips" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 but nothing else")
    (root / "clips" / "empty.mp4").write_bytes(b"")
    torch.manual_seed(0)
    tok = small_tokenizer("DV4x8x8-360p")
    torch.save({"model": training_state_dict(tok.state_dict()), "iteration": 5}, root / "dv.pt")
    return root


def encode(work: Path, *args: str) -> subprocess.CompletedProcess:
    return vtok_cli("encode", "--video_pattern", "clips/*.mp4", "--checkpoint", "dv.pt", *TINY, *args, cwd=work)


@pytest.fixture(scope="module")
def single(work: Path) -> Path:
    """One process's run of the whole folder (the reference the sharded runs must equal)."""
    result = encode(work, "--output_dir", "single")
    assert result.returncode == 1 and "6 done, 0 skipped (already done), 2 failed" in result.stdout, result.stderr
    return work / "single"


def outputs(folder: Path) -> dict[str, torch.Tensor]:
    return {p.name: load_tokens(p)[0] for p in sorted(folder.glob("*.safetensors"))}


def summary_lines(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("  failed ") and name in line]


def test_two_torchrun_ranks_write_what_one_process_writes(work, single):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", "-m", "vtok"]
    args = ["encode", "--video_pattern", "clips/*.mp4", "--checkpoint", "dv.pt", *TINY, "--output_dir", "ranks"]
    result = subprocess.run(command + args, capture_output=True, text=True, cwd=work, timeout=300)
    assert result.returncode != 0, "two unreadable files make the run fail"
    assert "encode, all 2 ranks: 6 done, 0 skipped (already done), 2 failed" in result.stdout, result.stdout
    for name in UNREADABLE:
        assert len(summary_lines(result.stdout + result.stderr, name)) == 1
    mine, reference = outputs(work / "ranks"), outputs(single)
    assert sorted(mine) == sorted(f"{Path(n).stem}.safetensors" for n in FRAMES)
    assert all(torch.equal(mine[name], reference[name]) for name in reference)
    assert read_manifest(work / "ranks" / "manifest.jsonl") == read_manifest(single / "manifest.jsonl")


def test_a_killed_shard_rerun_completes_the_set_and_encodes_nothing_twice(work, single):
    first = encode(work, "--output_dir", "shards2", "--shard", "0/2")
    assert first.returncode == 0 and "encode rank 0/2" in first.stdout and "wrote" not in first.stdout
    before = {p.name for p in (work / "shards2").glob("*.safetensors")}
    command = [sys.executable, "-m", "vtok", "encode", "--video_pattern", "clips/*.mp4", "--checkpoint", "dv.pt"]
    command += [*TINY, "--output_dir", "shards2", "--shard", "1/2"]
    with subprocess.Popen(command, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        deadline = time.monotonic() + 120
        while len(list((work / "shards2").glob("*.safetensors"))) == len(before) and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    kept = {p.name: os.stat(p) for p in (work / "shards2").glob("*.safetensors")}
    assert len(before) < len(kept) < len(FRAMES), "killed after its first file, before its last"
    assert not (work / "shards2" / "manifest.jsonl").exists()

    rerun = encode(work, "--output_dir", "shards2", "--shard", "1/2")
    done, skipped = len(FRAMES) - len(kept), len(kept) - len(before)
    assert f"{done} done, {skipped} skipped (already done), 2 failed" in rerun.stdout, rerun.stdout
    assert "encode, all 2 ranks: " in rerun.stdout and "wrote" in rerun.stdout
    for name, stat in kept.items():  # not encoded again: the same file, untouched
        now = os.stat(work / "shards2" / name)
        assert (now.st_ino, now.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    mine, reference = outputs(work / "shards2"), outputs(single)
    assert sorted(mine) == sorted(reference) and all(torch.equal(mine[n], reference[n]) for n in reference)
    assert read_manifest(work / "shards2" / "manifest.jsonl") == read_manifest(single / "manifest.jsonl")


def test_clip_windows_in_batches_from_workers_round_trip_through_tar_shards(work):
    clip = ("--clip_frames", "5", "--clip_stride", "4")
    files = encode(work, *clip, "--output_dir", "clip_files")
    shards = encode(work, *clip, "--output_dir", "clip_shards", "--format", "shards", "--shard_size", "3KB")
    shards_fast = encode(
        work, *clip, "--output_dir", "clip_fast", "--format", "shards", "--num_workers", "2", "--batch_size", "4"
    )
    for result in (files, shards, shards_fast):
        assert "6 done, 0 skipped (already done), 2 failed" in result.stdout, result.stderr
    assert len(existing_shards(work / "clip_shards")) > 1 and len(existing_shards(work / "clip_fast")) == 1
    per_file, in_shards, fast = (TokenDataset(work / d) for d in ("clip_files", "clip_shards", "clip_fast"))
    starts = {name: list(range(0, n - 5 + 1, 4)) for name, n in FRAMES.items()}
    assert [(Path(r["source"]).name, r["window_start"]) for r in per_file.records] == [
        (name, s) for name in sorted(starts) for s in starts[name]
    ]
    for a, b, c in zip(per_file, in_shards, fast, strict=True):
        assert (a["source"], a["window_start"]) == (b["source"], b["window_start"]) == (c["source"], c["window_start"])
        assert torch.equal(a["tokens"], b["tokens"]) and torch.equal(a["tokens"], c["tokens"])
        assert b["meta"]["clip_starts"] == [b["window_start"]] and list(b["tokens"].shape) == b["token_shape"]

    engine = load_engine(work / "dv.pt", dtype=torch.float32, device="cpu")
    frames, _ = read_video(work / "clips" / "v4.mp4")
    window = next(r for r in in_shards if Path(r["source"]).name == "v4.mp4" and r["window_start"] == 8)
    expected, _, count = Pipeline(engine, temporal_window=9).encode(iter(frames[8:13]))
    assert count == 5 and torch.equal(window["tokens"], expected), "each window is encoded on its own"

    sampler = [in_shards.sampler(rank, 2, shuffle=True, seed=3) for rank in range(2)]
    shares = [list(s) for s in sampler]
    assert len(in_shards) % 2 and len(shares[0]) == len(shares[1]) == (len(in_shards) + 1) // 2
    assert set(shares[0]) | set(shares[1]) == set(range(len(in_shards)))
    assert len(set(shares[0]) & set(shares[1])) == 1, "disjoint but for the one sample that evens out the ranks"

    decoded = vtok_cli("decode", "--token_pattern", "clip_files/*.safetensors", "--checkpoint", "dv.pt", cwd=work)
    assert decoded.returncode == 1 and "--clip_frames" in decoded.stderr and "Traceback" not in decoded.stderr
    assert len(decoded.stderr.strip().splitlines()) == 1, decoded.stderr


@pytest.mark.parametrize("name", ["DV4x8x8-360p", "CV4x8x8-360p"])
def test_a_batch_gives_the_tokens_of_one_window_at_a_time(name):
    tok = small_tokenizer(name)
    engine = TokenizerEngine(tok.name, tok.config, torch.device("cpu"), torch.float32, "torch")
    engine.encode_fn = (lambda x: tok.encode(x)[0]) if tok.config.is_discrete else tok.encode
    engine.tokenizer = tok
    pipeline = Pipeline(engine, temporal_window=9)
    windows = [synthetic_frames(5, 24, 40, seed=s) for s in range(3)]
    assert pipeline.processing == "stream" and batchable(pipeline, windows[0].shape)
    batched, _ = encode_batch(pipeline, windows)
    for window, tokens in zip(windows, batched):
        alone, _, _ = pipeline.encode(iter(window))
        assert torch.equal(tokens, alone) if tok.config.is_discrete else torch.allclose(tokens, alone, atol=1e-5)


def test_clip_windows_hold_the_frames_asked_for():
    frames = [np.full((2, 2, 3), i, np.uint8) for i in range(11)]
    windows, count = clip_windows(frames, ClipSpec(4, 3))
    assert count == 11 and [w[:, 0, 0, 0].tolist() for w in windows] == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    spaced, _ = clip_windows(frames, ClipSpec(2, 5))
    assert [w[:, 0, 0, 0].tolist() for w in spaced] == [[0, 1], [5, 6]] and ClipSpec(2, 5).starts(11) == [0, 5]


def test_the_split_is_deterministic_disjoint_and_balanced_by_frames(work):
    videos = sorted((work / "clips").glob("v*.mp4"))
    index_videos(videos, manifest_path=work / "index.json", progress=False)
    from_index = frame_counts(videos, work / "index.json")
    assert from_index == {v: FRAMES[v.name] for v in videos} == frame_counts(videos)  # index and headers agree
    shares = split_by_frames(videos, from_index, 2)
    assert [set(s) for s in shares] == [set(s) for s in split_by_frames(videos[::-1], from_index, 2)]
    assert sorted(p for share in shares for p in share) == videos and not set(shares[0]) & set(shares[1])
    loads = [sum(from_index[p] for p in share) for share in shares]
    assert max(loads) - min(loads) <= max(FRAMES.values())
    assert split_by_frames(videos, from_index, 8)[7] == []  # more ranks than files: the last ones idle


def test_ranks_come_from_the_flag_or_torchrun():
    assert parse_shard("2/5") == (2, 5) and rank_of(None, {}).count == 1
    env = {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "TORCHELASTIC_RUN_ID": "x"}
    rank = rank_of(None, env)
    assert (rank.index, rank.count, rank.local_index, rank.torchrun) == (3, 4, 1, True)
    with pytest.raises(ValueError, match="without torchrun"):
        rank_of("0/2", env)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--shard", "2/2", "--output_dir", "o"], "--shard must be I/N with 0 <= I < N"),
        (["--shard", "half", "--output_dir", "o"], "--shard must be I/N"),
        (["--shard", "0/2"], "a sharded run (rank 0/2) needs --output_dir"),
        (["--format", "shards"], "--format shards needs --output_dir"),
        (["--clip_stride", "4"], "--clip_stride needs --clip_frames"),
        (["--shard_size", "1GB", "--output_dir", "o"], "--shard_size sets the size of tar shards"),
        (["--format", "shards", "--overwrite", "--output_dir", "o"], "--overwrite cannot replace samples"),
        (["--compile", "--mode", "jit"], "--compile compiles vtok's network"),
    ],
)
def test_bad_flags_fail_in_one_line_before_any_model_loads(work, capsys, monkeypatch, args, message):
    monkeypatch.chdir(work)
    code = main(["encode", "--video_pattern", "clips/*.mp4", "--checkpoint", "missing.pt", *args])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and message in err, err


def test_rank_zero_sums_every_ranks_progress_in_one_line(tmp_path):
    from vtok.inference.per_file import FileReport
    from vtok.inference.run_parts import RankProgress
    from vtok.inference.sharding import Rank

    ranks = [RankProgress(tmp_path, Rank(i, 2), "run", total=10, write_s=0, print_s=1e9) for i in range(2)]
    for i, progress in enumerate(ranks):
        report = FileReport(done=[Path(f"{i}_{k}") for k in range(2 + 3 * i)], failed=[(Path("bad"), "x")] * i)
        progress(report, samples=4 * (i + 1), frames=40 * (i + 1), elapsed=2.0)
    line = ranks[0].summary_line()
    assert line.startswith("all 2 ranks (2 reporting): 8/20 files, 1 failed, 6.0 clips/s, 60 frames/s"), line
    stale = RankProgress(tmp_path, Rank(0, 2), "another run", total=10)
    assert stale.summary_line() is None
