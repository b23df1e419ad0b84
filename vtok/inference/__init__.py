"""Running a tokenizer on real media: engines (torch or TorchScript), windows, tiles, the pipeline."""

from .engine import TokenizerEngine, load_engine
from .pipeline import FrameLayout, Pipeline
from .tiles import Tiling
from .windows import TemporalWindows

__all__ = ["TokenizerEngine", "load_engine", "FrameLayout", "Pipeline", "Tiling", "TemporalWindows"]
