"""Model files: the one weights-only reader, NVIDIA's training and TorchScript layouts, loading and exporting."""

from .export import RELEASE_NAMES, export_jit
from .load import CheckpointContents, infer_model_name, load_tokenizer, read_checkpoint, resolve_checkpoint
from .lora_file import read_lora_file
from .mismatch import StateMismatch
from .reader import CheckpointError, read_jit_file, read_state_dict, read_torch_file
from .record import VtokRecord
from .training_file import TrainingFile

__all__ = [
    "RELEASE_NAMES",
    "export_jit",
    "CheckpointContents",
    "infer_model_name",
    "load_tokenizer",
    "read_checkpoint",
    "resolve_checkpoint",
    "read_lora_file",
    "StateMismatch",
    "CheckpointError",
    "read_jit_file",
    "read_state_dict",
    "read_torch_file",
    "VtokRecord",
    "TrainingFile",
]
