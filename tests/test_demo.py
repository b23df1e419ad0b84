"""`vtok demo` (what `make demo` runs after its set-up), at small sizes: every step runs through the real
trainer and commands, and the run ends with the table, the PNGs and a better PSNR than the start."""

from __future__ import annotations

import json
import re

import numpy as np
from conftest import vtok_cli
from PIL import Image

from vtok.io.video import probe_video


def test_demo_post_trains_and_improves(tmp_path):
    out = tmp_path / "demo"
    result = vtok_cli(
        "demo",
        "--output_dir",
        str(out),
        "--iterations",
        "6",
        "--train_videos",
        "2",
        "--val_videos",
        "1",
        "--video_frames",
        "9",
        "--video_size",
        "32",
        "48",
        "--frames",
        "9",
        "--size",
        "32",
        "--channels",
        "16",
        "--checkpoints",
        str(tmp_path / "no_release"),
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = re.search(r"before\s+([\d.]+)\s+([\d.]+)\nafter 6 it\s+([\d.]+)\s+([\d.]+)", result.stdout)
    assert table, result.stdout[-2000:]
    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    before, after = metrics["models"]["B"]["mean"], metrics["models"]["A"]["mean"]
    assert float(table[1]) == round(before["psnr"], 2) and float(table[3]) == round(after["psnr"], 2)
    assert after["psnr"] > before["psnr"]

    job = out / "runs" / "demo" / "vtok" / "CV4x8x8-360p"
    for suffix in (".pt", "_enc.jit", "_dec.jit", "_ema.jit"):
        assert (job / "checkpoints" / f"iter_000000006{suffix}").is_file()
    assert (job / "config.yaml").is_file() and "it 6/6" in (job / "stdout.log").read_text()
    for stage in ("before", "after"):
        info = probe_video(out / "reconstructions" / stage / "val_000.mp4")
        assert (info.num_frames, info.height, info.width) == (9, 32, 48)
    for png in ("loss_curve.png", "frames_input_before_after.png"):
        image = np.asarray(Image.open(out / png))
        assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 5, png
        assert str(out / png) in result.stdout


def test_demo_rejects_impossible_sizes(tmp_path):
    result = vtok_cli(
        "demo",
        "--output_dir",
        str(tmp_path / "demo"),
        "--frames",
        "10",
        "--train_videos",
        "1",
        "--val_videos",
        "1",
        "--video_frames",
        "9",
        "--video_size",
        "32",
        "32",
    )
    assert result.returncode != 0
    assert "num_video_frames=10" in result.stderr + result.stdout
