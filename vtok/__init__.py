"""vtok: post-train and use NVIDIA's Cosmos-Tokenize1 video tokenizers.

The package facade: the names most users need, from the layers below (README.md#layout lists them).
"""

from __future__ import annotations

from .checkpoint import export_jit, load_tokenizer
from .networks import MODEL_NAMES, TokenizerConfig, build_tokenizer, canonical_name, get_config, tokenizer_from_config
from .networks.tokenizer import ContinuousTokenizer, DiscreteTokenizer, Tokenizer
from .version import __version__

__all__ = [
    "MODEL_NAMES",
    "TokenizerConfig",
    "Tokenizer",
    "ContinuousTokenizer",
    "DiscreteTokenizer",
    "build_tokenizer",
    "canonical_name",
    "get_config",
    "tokenizer_from_config",
    "load_tokenizer",
    "export_jit",
    "__version__",
]
