"""Evaluation results as a CSV table, a JSON file (with per-frame PSNR) and a per-frame PSNR plot."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..io.atomic import atomic_path
from .compare import ModelScores

COLUMNS = ("video", "model", "frames", "psnr", "psnr_pooled", "ssim", "lpips")


def mean_scores(scores: ModelScores) -> dict[str, float | int | None]:
    """Means over videos (TokenBench: pooled PSNR, SSIM, LPIPS), plus PSNR over all frames (NVIDIA's)."""
    summaries = [v.summary() for v in scores.videos.values()]
    if not summaries:
        return {"videos": 0}
    all_psnr = [p for v in scores.videos.values() for p in v.psnr_per_frame]
    lpips = [s["lpips"] for s in summaries if s["lpips"] is not None]
    return {
        "videos": len(summaries),
        "frames": sum(int(s["frames"]) for s in summaries),
        "psnr": float(np.mean(all_psnr)),
        "psnr_pooled": float(np.mean([s["psnr_pooled"] for s in summaries])),
        "ssim": float(np.mean([s["ssim"] for s in summaries])),
        "lpips": float(np.mean(lpips)) if lpips else None,
    }


def format_table(results: Sequence[ModelScores]) -> str:
    """One line per model: videos, frames, PSNR (both ways), SSIM, LPIPS ('-' without weights)."""
    header = f"{'model':<6} {'videos':>6} {'frames':>7} {'PSNR':>8} {'PSNR pooled':>12} {'SSIM':>7} {'LPIPS':>7}"
    lines = [header]
    for m in results:
        s = mean_scores(m)
        if not s.get("videos"):
            lines.append(f"{m.label:<6} {0:>6}")
            continue
        lp = "-" if s["lpips"] is None else f"{s['lpips']:.4f}"
        lines.append(
            f"{m.label:<6} {s['videos']:>6} {s['frames']:>7} {s['psnr']:>8.2f} {s['psnr_pooled']:>12.2f} "
            f"{s['ssim']:>7.4f} {lp:>7}"
        )
    return "\n".join(lines)


def _fmt(value: float | int | None) -> str:
    return "" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))


def write_csv(path: Path, results: Sequence[ModelScores]) -> Path:
    """One row per (video, model), then one `mean` row per model."""
    rows = []
    for scores in results:
        for video, v in scores.videos.items():
            rows.append({"video": video, "model": scores.label, **v.summary()})
        rows.append({"video": "mean", "model": scores.label, **mean_scores(scores)})
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: _fmt(row.get(k)) for k in COLUMNS} for row in rows)
    return path


def write_json(path: Path, results: Sequence[ModelScores], settings: dict) -> Path:
    """Everything: settings, per-model means, per-video summaries and per-frame PSNR/SSIM."""
    data = {
        "settings": settings,
        "definitions": {
            "psnr": "mean over frames of 10*log10(255^2/(mse+1e-8)), mse per uint8 frame (NVIDIA's validation)",
            "psnr_pooled": "10*log10(255^2/mse) with mse over all frames and pixels of a video, mean over videos "
            "(TokenBench)",
            "ssim": "per frame, data_range 255, skimage's defaults; mean per video, then over videos",
            "lpips": "LPIPS-VGG per frame; mean per video, then over videos (null without local weights)",
        },
        "models": {
            s.label: {
                "checkpoint": s.checkpoint,
                "model": s.model,
                "mean": mean_scores(s),
                "videos": {
                    video: {**v.summary(), "psnr_per_frame": v.psnr_per_frame, "ssim_per_frame": v.ssim}
                    for video, v in s.videos.items()
                },
            }
            for s in results
        },
    }
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, allow_nan=True))
    return path


def write_plot(path: Path, results: Sequence[ModelScores]) -> Path:
    """Per-frame PSNR of each model, videos one after another, with their boundaries marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
    for scores in results:
        psnr = [p for v in scores.videos.values() for p in v.psnr_per_frame]
        mean = mean_scores(scores).get("psnr")
        ax.plot(psnr, linewidth=1, label=f"{scores.label} ({scores.model}, mean {mean:.2f} dB)")
    if results:
        offset = 0
        for v in list(results[0].videos.values())[:-1]:
            offset += v.frames
            ax.axvline(offset - 0.5, color="0.85", linewidth=0.8, zorder=0)
    ax.set_xlabel("frame (videos in sorted order; grey lines separate videos)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title("Per-frame PSNR of the reconstructions")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return path
