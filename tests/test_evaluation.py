"""Evaluation plumbing with models whose reconstructions are known exactly: identity and a one-level shift."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from conftest import synthetic_frames
from skimage.metrics import structural_similarity

import vtok
from vtok.evaluation import ModelScores, evaluate_video, mean_scores, write_csv, write_json, write_plot
from vtok.inference import Pipeline, TokenizerEngine
from vtok.io import read_video, write_video

ONE_LEVEL = 2 / 255  # one uint8 step in [-1, 1]


def engine(autoencode) -> TokenizerEngine:
    config = vtok.get_config("CV4x8x8-360p")
    return TokenizerEngine(
        "CV4x8x8-360p", config, torch.device("cpu"), torch.float32, "torch", autoencode_fn=autoencode
    )


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("eval") / "clip.mp4"
    write_video(path, synthetic_frames(21, 30, 44), fps=25)
    return path


def test_identity_and_shift_give_the_expected_scores(video, tmp_path):
    pipelines = {
        "A": Pipeline(engine(lambda x: x), temporal_window=9, temporal_overlap=4),
        "B": Pipeline(engine(lambda x: x + ONE_LEVEL), temporal_window=9, temporal_overlap=4),
    }
    side = tmp_path / "side.mp4"
    scores = evaluate_video(video, pipelines, side_by_side=side)
    frames, _ = read_video(video)
    a, b = scores["A"].summary(), scores["B"].summary()
    assert a["frames"] == b["frames"] == len(frames) == 21
    # identity: reconstruction equals the input, so every frame hits the eps cap and SSIM is exactly 1
    assert a["psnr"] == pytest.approx(10 * math.log10(255**2 / 1e-8))
    assert a["psnr_pooled"] == math.inf and a["ssim"] == pytest.approx(1.0)
    # one-level shift: every pixel is off by exactly 1 (inputs stay below 255), so MSE = 1 in every frame
    assert np.allclose(scores["B"].mse, 1.0)
    assert b["psnr"] == pytest.approx(10 * math.log10(255**2 / (1 + 1e-8)))
    assert b["psnr_pooled"] == pytest.approx(10 * math.log10(255**2))
    expected_ssim = np.mean([structural_similarity(f, f + 1, data_range=255, channel_axis=-1) for f in frames])
    assert b["ssim"] == pytest.approx(expected_ssim, abs=1e-9)
    side_frames, _ = read_video(side)
    assert side_frames.shape == (21, 30, 44 * 3, 3)


def test_reports_hold_both_psnr_definitions(video, tmp_path):
    pipelines = {
        "A": Pipeline(
            engine(lambda x: x + ONE_LEVEL * (torch.arange(x.shape[2]) % 3).view(1, 1, -1, 1, 1)), temporal_window=49
        )
    }
    results = [ModelScores("A", "ckpt", "CV4x8x8-360p")]
    results[0].videos[str(video)] = evaluate_video(video, pipelines)["A"]
    mean = mean_scores(results[0])
    per_frame = results[0].videos[str(video)].psnr_per_frame
    assert mean["psnr"] == pytest.approx(np.mean(per_frame))
    # frames with different errors: pooled-MSE PSNR differs from the mean of per-frame PSNRs
    assert mean["psnr_pooled"] != pytest.approx(mean["psnr"])
    write_csv(tmp_path / "m.csv", results)
    rows = list(csv.DictReader(open(tmp_path / "m.csv")))
    assert [r["video"] for r in rows] == [str(video), "mean"]
    assert float(rows[-1]["psnr_pooled"]) == pytest.approx(mean["psnr_pooled"], abs=1e-4)
    write_json(tmp_path / "m.json", results, {"x": 1})
    data = json.loads((tmp_path / "m.json").read_text())
    assert len(data["models"]["A"]["videos"][str(video)]["psnr_per_frame"]) == 21
    plot = write_plot(tmp_path / "p.png", results)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
