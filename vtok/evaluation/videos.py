"""Evaluate one or more tokenizers on a set of videos and write the tables: what `vtok evaluate` runs.

Each video streams through every pipeline once; an unreadable video is named and skipped; the scores computed
are written (CSV, JSON with per-frame values, a per-frame PSNR plot) even when some videos failed, and on Ctrl-C
(recorded as `interrupted` in metrics.json). `evaluation_outputs` plans those files, so a command can check them
before it loads a model.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..inference.per_file import FileReport, Interrupted, run_per_file
from ..inference.pipeline import Pipeline
from ..io import OutputPlan, output_path
from ..io.video import is_vtok_video
from ..metrics import LPIPS
from .compare import ModelScores, evaluate_video
from .report import write_csv, write_json, write_plot


@dataclass
class Evaluation:
    """Scores per model (label A, B, ...), what happened to each video, and the files written."""

    models: list[ModelScores]
    report: FileReport
    written: list[Path] = field(default_factory=list)

    def model(self, label: str) -> ModelScores:
        return next(m for m in self.models if m.label == label)


TABLES = ("metrics.csv", "metrics.json", "psnr_per_frame.png")


def evaluation_outputs(files: Sequence[Path], output_dir: str | Path, save_videos: bool = False) -> OutputPlan:
    """Every file `evaluate_videos` may write (tables, plot, side-by-side videos), to check before any work."""
    output_dir = Path(output_dir)
    plan = OutputPlan("media", files, "evaluate", owned=is_vtok_video)
    for name in TABLES:
        plan.add(output_dir / name, f"the evaluation's {name}", output_dir)
    for source in files if save_videos else ():
        plan.add(output_path(source, files, output_dir / "videos", ".mp4"), f"the side-by-side of {source}", output_dir)
    return plan


def evaluate_videos(
    files: Sequence[Path],
    pipelines: Mapping[str, Pipeline],
    checkpoints: Mapping[str, str],
    output_dir: str | Path,
    *,
    lpips: LPIPS | None = None,
    save_videos: bool = False,
    settings: Mapping[str, Any] | None = None,
) -> Evaluation:
    """Score every pipeline's reconstructions of `files` and write metrics.csv, metrics.json and
    psnr_per_frame.png to `output_dir` (and side-by-side mp4s under videos/ with `save_videos`).

    `checkpoints` describes each label's checkpoint for the tables; `settings` is recorded in metrics.json."""
    output_dir = Path(output_dir)
    models = [ModelScores(label, checkpoints.get(label, ""), p.engine.name) for label, p in pipelines.items()]
    if lpips is not None:
        lpips = lpips.to(next(iter(pipelines.values())).engine.device)
    started = time.perf_counter()

    def job(source: Path) -> bool:
        side = output_path(source, files, output_dir / "videos", ".mp4") if save_videos else None
        scores = evaluate_video(source, pipelines, lpips=lpips, side_by_side=side)
        for model in models:
            model.videos[str(source)] = scores[model.label]
        return True

    report = FileReport()
    interrupted: Interrupted | None = None
    try:
        run_per_file(files, job, "evaluate", report=report)
    except Interrupted as stop:  # keep the scores computed so far
        interrupted = stop
    first = next(iter(pipelines.values()))
    recorded = {
        "engine": first.engine.describe(),
        "processing": first.processing,
        "temporal_window": first.temporal_window or None,
        "temporal_overlap": first.temporal_overlap if first.windows else None,
        **(settings or {}),
        "seconds": round(time.perf_counter() - started, 2),
        "failed": [str(p) for p, _ in report.failed],
        "interrupted": interrupted is not None,
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    written = [write_csv(output_dir / "metrics.csv", models), write_json(output_dir / "metrics.json", models, recorded)]
    if any(m.videos for m in models):
        written.append(write_plot(output_dir / "psnr_per_frame.png", models))
    if interrupted is not None:
        raise Interrupted(
            f"evaluate stopped during {interrupted.path}; wrote {', '.join(str(p) for p in written)} with the scores "
            f"of the {len(report.done)} of {len(files)} videos finished before it (metrics.json says interrupted)"
        )
    return Evaluation(models, report, written)
