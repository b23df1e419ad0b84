"""vtok: post-train and use NVIDIA's Cosmos-Tokenize1 video tokenizers."""

from __future__ import annotations

from typing import Any

from .checkpoint import export_jit, load_tokenizer
from .networks import MODEL_NAMES, TokenizerConfig, canonical_name, get_config, tokenizer_from_config
from .networks.tokenizer import ContinuousTokenizer, DiscreteTokenizer, Tokenizer

__version__ = "0.1.0"


def build_tokenizer(name: str, **overrides: Any) -> Tokenizer:
    """A randomly initialized tokenizer by model name (e.g. 'CV8x8x8-720p'), with config overrides.

    Unknown override fields raise ValueError naming them. Build on `torch.device('meta')` to get the
    structure without allocating weights.
    """
    return tokenizer_from_config(get_config(name, **overrides), canonical_name(name))


__all__ = [
    "MODEL_NAMES",
    "TokenizerConfig",
    "Tokenizer",
    "ContinuousTokenizer",
    "DiscreteTokenizer",
    "build_tokenizer",
    "load_tokenizer",
    "export_jit",
    "__version__",
]
