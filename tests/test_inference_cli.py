"""`vtok autoencode / encode / decode / evaluate` end to end, as a user runs them, on generated mp4s."""

from __future__ import annotations

import csv
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import small_tokenizer, synthetic_frames, vtok_cli

from vtok.checkpoint.state_dict import training_state_dict
from vtok.io import probe_video, read_image, read_video, write_image, write_video
from vtok.io.tokens import load_tokens

pytestmark = pytest.mark.slow

CLIPS = {"a.mp4": (23, Fraction(30000, 1001)), "b.mp4": (9, Fraction(25)), "sub/a.mp4": (13, Fraction(24))}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """clips/ with three videos (two named a.mp4) and a corrupt one, a training checkpoint and its jits."""
    root = tmp_path_factory.mktemp("cli")
    for k, (name, (frames, fps)) in enumerate(CLIPS.items()):
        write_video(root / "clips" / name, synthetic_frames(frames, 36, 50, seed=k), fps)
    (root / "clips" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 but nothing else")
    torch.manual_seed(0)
    tok = small_tokenizer("CV4x8x8-360p")
    torch.save({"model": training_state_dict(tok.state_dict()), "iteration": 5}, root / "iter_5.pt")
    result = vtok_cli(
        "export-jit",
        "--checkpoint",
        str(root / "iter_5.pt"),
        "--reg",
        "--dtype",
        "float32",
        "--output_dir",
        str(root / "jit"),
        "--input_shape",
        "1",
        "3",
        "5",
        "32",
        "32",
    )
    assert result.returncode == 0, result.stderr
    return root


def run(work: Path, *args: str):
    return vtok_cli(*args, cwd=work)


def test_autoencode_keeps_frames_size_and_fps_and_reports_a_corrupt_file(work):
    result = run(
        work,
        "autoencode",
        "--video_pattern",
        "clips/**/*.mp4",
        "--checkpoint_enc",
        "jit/encoder.jit",
        "--checkpoint_dec",
        "jit/decoder.jit",
        "--output_dir",
        "rec",
        "--save_input",
        "--temporal_window",
        "9",
    )
    assert result.returncode == 1, result.stderr  # one file failed
    assert "broken.mp4" in result.stderr and "3 done" in result.stdout and "1 failed" in result.stdout
    for name, (frames, fps) in CLIPS.items():
        info = probe_video(work / "rec" / name)
        assert (info.num_frames, info.fps, info.height, info.width) == (frames, fps, 36, 50)
        assert read_video(work / "rec" / name)[0].shape == (frames, 36, 50, 3)
        assert (work / "rec" / name).with_name(Path(name).stem + "_input.mp4").exists()
    assert not (work / "rec" / "broken.mp4").exists()


def test_encode_then_decode_equals_autoencode_and_encode_resumes(work):
    args = ("--video_pattern", "clips/*.mp4", "--temporal_window", "9")  # torch mode: exact streams
    auto = run(work, "autoencode", *args, "--checkpoint", "iter_5.pt", "--output_dir", "auto")
    encoded = run(work, "encode", *args, "--checkpoint", "iter_5.pt", "--output_dir", "tokens")
    assert encoded.returncode == 1 and "2 done" in encoded.stdout and "broken.mp4" in encoded.stderr
    again = run(work, "encode", *args, "--checkpoint", "iter_5.pt", "--output_dir", "tokens")
    assert "0 done, 2 skipped" in again.stdout
    tokens, meta = load_tokens(work / "tokens" / "a.safetensors")
    assert tokens.shape == (16, 1 + (23 - 1 + 3) // 4, 40 // 8, 56 // 8)
    assert (meta.model, meta.num_frames, meta.fps, meta.padding) == ("CV4x8x8-360p", 23, "30000/1001", (2, 2, 3, 3))
    assert (meta.processing, meta.exact) == ("stream", True)
    decoded = run(
        work,
        "decode",
        "--token_pattern",
        "tokens/*.safetensors",
        "--checkpoint_dec",
        "jit/decoder.jit",
        "--output_dir",
        "decoded",
    )
    assert decoded.returncode == 0, decoded.stderr  # a jit decoder cannot stream: approximate windows
    exact = run(
        work, "decode", "--token_pattern", "tokens/*.safetensors", "--checkpoint", "iter_5.pt", "--output_dir", "exact"
    )
    assert exact.returncode == 0, exact.stderr
    for name in ("a.mp4", "b.mp4"):
        a, info_a = read_video(work / "auto" / name)
        d, info_d = read_video(work / "decoded" / name)
        assert a.shape == d.shape and info_a.fps == info_d.fps
        assert np.abs(a.astype(int) - d).mean() < 0.5
        assert np.array_equal(a, read_video(work / "exact" / name)[0])
    assert auto.returncode == 1


def test_evaluate_writes_tables_and_plot(work):
    result = run(
        work,
        "evaluate",
        "--video_pattern",
        "clips/[ab].mp4",
        "--checkpoint",
        "iter_5.pt",
        "--baseline",
        "jit/encoder.jit",
        "--output_dir",
        "eval",
        "--temporal_window",
        "9",
        "--save_videos",
    )
    assert result.returncode == 0, result.stderr
    assert "PSNR pooled" in result.stdout and "LPIPS: not computed" in result.stdout
    rows = list(csv.DictReader(open(work / "eval" / "metrics.csv")))
    assert len(rows) == 2 * 3  # (2 videos + mean) x (A, B)
    by_model = {m: [r for r in rows if r["model"] == m] for m in ("A", "B")}
    for ra, rb in zip(by_model["A"], by_model["B"]):  # same weights, two file formats: same scores
        assert float(ra["psnr"]) == pytest.approx(float(rb["psnr"]), abs=0.05)
    data = json.loads((work / "eval" / "metrics.json").read_text())
    assert data["models"]["A"]["mean"]["videos"] == 2 and data["models"]["A"]["mean"]["frames"] == 23 + 9
    assert (work / "eval" / "psnr_per_frame.png").read_bytes()[:4] == b"\x89PNG"
    assert read_video(work / "eval" / "videos" / "a.mp4")[0].shape == (23, 36, 150, 3)


def test_images_go_through_a_video_model(work):
    images = work / "images"
    write_image(images / "x.png", synthetic_frames(1, 37, 41)[0])
    result = run(work, "autoencode", "--image_pattern", "images/*.png", "--checkpoint", "iter_5.pt")
    assert result.returncode == 0, result.stderr
    assert read_image(images / "reconstructions" / "x.png").shape == (37, 41, 3)


@pytest.mark.parametrize(
    "args,message",
    [
        (("autoencode", "--video_pattern", "nowhere/*.mp4", "--checkpoint", "iter_5.pt"), "no files match 'nowhere/"),
        (("autoencode", "--video_pattern", "clips/*.mp4", "--checkpoint", "missing.pt"), "no such checkpoint"),
        (
            (
                "autoencode",
                "--video_pattern",
                "clips/*.mp4",
                "--checkpoint",
                "iter_5.pt",
                "--tokenizer_type",
                "DV4x8x8-360p",
            ),
            "does not fit DV4x8x8-360p",
        ),
        (
            ("autoencode", "--video_pattern", "clips/*.mp4", "--checkpoint", "iter_5.pt", "--temporal_window", "10"),
            "--temporal_window must be 1 + a multiple of 4",
        ),
        (("encode", "--video_pattern", "clips/*.mp4", "--checkpoint_dec", "jit/decoder.jit"), "needs the encoder"),
    ],
)
def test_bad_input_fails_fast_with_one_line(work, args, message):
    result = run(work, *args)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vtok: error:") and message in lines[0], result.stderr


def test_decode_refuses_tokens_of_another_model(work, tmp_path):
    other = small_tokenizer("DV4x8x8-360p")
    torch.save({"model": training_state_dict(other.state_dict())}, tmp_path / "dv.pt")
    run(work, "encode", "--video_pattern", "clips/b.mp4", "--checkpoint", "iter_5.pt", "--output_dir", "tokens_b")
    result = run(work, "decode", "--token_pattern", "tokens_b/*.safetensors", "--checkpoint", str(tmp_path / "dv.pt"))
    assert result.returncode == 1
    assert "made by CV4x8x8-360p, but the checkpoint is DV4x8x8-360p" in result.stderr


def test_inputs_that_would_overwrite_each_other_are_refused(work, tmp_path):
    for suffix in (".mp4", ".mov"):
        write_video(tmp_path / f"clip{suffix}", synthetic_frames(5, 16, 16), 24)
    result = run(work, "autoencode", "--video_pattern", str(tmp_path / "clip.*"), "--checkpoint", "iter_5.pt")
    assert result.returncode == 1 and "would both be written to" in result.stderr
