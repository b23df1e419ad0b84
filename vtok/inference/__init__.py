"""Running a tokenizer on real media: engines (torch or TorchScript), windows, tiles, the pipeline, files on disk."""

from .engine import TokenizerEngine, load_engine
from .media import (
    autoencode_image,
    autoencode_video,
    decode_tokens,
    encode_image,
    encode_video,
    replay_pipeline,
    token_meta,
    write_decoded,
)
from .per_file import FileReport, run_per_file
from .pipeline import FrameLayout, Pipeline
from .tiles import Tiling
from .windows import TemporalWindows

__all__ = [
    "TokenizerEngine",
    "load_engine",
    "autoencode_image",
    "autoencode_video",
    "decode_tokens",
    "encode_image",
    "encode_video",
    "replay_pipeline",
    "token_meta",
    "write_decoded",
    "FileReport",
    "run_per_file",
    "FrameLayout",
    "Pipeline",
    "Tiling",
    "TemporalWindows",
]
