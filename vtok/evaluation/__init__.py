"""Comparing reconstructions with their inputs: per-frame scores, per-video summaries, tables and plots."""

from .compare import ModelScores, VideoScores, evaluate_video
from .report import mean_scores, write_csv, write_json, write_plot

__all__ = ["ModelScores", "VideoScores", "evaluate_video", "mean_scores", "write_csv", "write_json", "write_plot"]
