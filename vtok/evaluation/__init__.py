"""Comparing reconstructions with their inputs: per-frame scores, per-video summaries, tables and plots."""

from .compare import ModelScores, VideoScores, evaluate_video
from .report import format_table, mean_scores, write_csv, write_json, write_plot
from .videos import Evaluation, evaluate_videos

__all__ = [
    "ModelScores",
    "VideoScores",
    "evaluate_video",
    "format_table",
    "mean_scores",
    "write_csv",
    "write_json",
    "write_plot",
    "Evaluation",
    "evaluate_videos",
]
