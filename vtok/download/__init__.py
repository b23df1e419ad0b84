"""Downloading checkpoints and datasets."""
