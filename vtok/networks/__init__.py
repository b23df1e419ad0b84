"""The Cosmos-Tokenize1 networks, checkpoint-compatible with NVIDIA's releases."""

from .config import MODEL_NAMES, NAMED_CONFIGS, TokenizerConfig, canonical_name, get_config
from .tokenizer import (
    ContinuousTokenizer,
    DiscreteTokenizer,
    Tokenizer,
    TokenizerOutput,
    build_tokenizer,
    tokenizer_from_config,
)

__all__ = [
    "MODEL_NAMES",
    "NAMED_CONFIGS",
    "TokenizerConfig",
    "canonical_name",
    "get_config",
    "ContinuousTokenizer",
    "DiscreteTokenizer",
    "Tokenizer",
    "TokenizerOutput",
    "tokenizer_from_config",
    "build_tokenizer",
]
