"""Reading and writing tokenizer checkpoints: training files, NVIDIA releases and TorchScript exports."""

from .export import RELEASE_NAMES, export_jit
from .load import CheckpointContents, infer_model_name, load_tokenizer, read_checkpoint, resolve_checkpoint

__all__ = [
    "RELEASE_NAMES",
    "export_jit",
    "CheckpointContents",
    "infer_model_name",
    "load_tokenizer",
    "read_checkpoint",
    "resolve_checkpoint",
]
