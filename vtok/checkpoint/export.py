"""TorchScript export in NVIDIA's file contract (docs/design.md#jit-files), written atomically.

vtok's exports are drop-in replacements for the released `encoder.jit`/`decoder.jit`/`autoencoder.jit`
(same inputs, outputs and state_dict keys) and carry a small `vtok.json` with the model name and
config, so `load_tokenizer` needs no hint to read them back.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from ..io.atomic import atomic_path
from ..networks.config import overrides_of
from ..networks.memory_format import set_memory_format
from ..networks.tokenizer import Tokenizer
from .reader import METADATA_FILE
from .record import VtokRecord

RELEASE_NAMES = {"encoder": "encoder.jit", "decoder": "decoder.jit", "autoencoder": "autoencoder.jit"}


def default_example_shape(tok: Tokenizer) -> tuple[int, ...]:
    """The smallest input whose latent has two frames, so the traced decoder keeps its time upsampling."""
    tc, sc = tok.compression
    return (1, 3, 1 + tc, 4 * sc, 4 * sc) if tok.config.is_video else (1, 3, 4 * sc, 4 * sc)


def check_example_shape(tok: Tokenizer, shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    tok.check_input_shape(shape)
    tc, _ = tok.compression
    if tok.config.is_video and shape[2] < 1 + tc:
        raise ValueError(
            f"example input {list(shape)} has T={shape[2]}: a trace needs T >= {1 + tc} so the latent has more "
            "than one frame; NVIDIA's traced decoders freeze their temporal upsampling off otherwise"
        )
    return shape


def _metadata(tok: Tokenizer) -> str:
    return json.dumps(VtokRecord(name=tok.name, overrides=overrides_of(tok.name, tok.config)).to_dict())


def _save_atomic(module: torch.jit.ScriptModule, path: Path, metadata: str) -> None:
    with atomic_path(path) as tmp:
        torch.jit.save(module, str(tmp), _extra_files={METADATA_FILE: metadata})


@torch.no_grad()
def export_jit(
    tok: Tokenizer,
    output_dir: str | Path,
    *,
    names: Mapping[str, str] = RELEASE_NAMES,
    example_shape: Sequence[int] | None = None,
    dtype: torch.dtype = torch.bfloat16,
    device: str | torch.device | None = None,
    seed: int = 0,
) -> dict[str, Path]:
    """Trace `tok` into the files named in `names` (keys: encoder, decoder, autoencoder) under `output_dir`.

    The traced graphs work at any B, T, H, W; `example_shape` only has to be valid and have at least
    1 + temporal_compression frames. `tok` itself is not modified (a copy is cast to `dtype`).
    """
    unknown = set(names) - set(RELEASE_NAMES)
    if unknown:
        raise ValueError(f"unknown export part(s) {sorted(unknown)}; expected some of {sorted(RELEASE_NAMES)}")
    shape = check_example_shape(tok, example_shape or default_example_shape(tok))
    device = torch.device(device) if device is not None else tok.device
    # contiguous weights: the exported files hold plain tensors, whatever layout `tok` runs in
    model = set_memory_format(copy.deepcopy(tok).to(device=device, dtype=dtype).eval(), torch.contiguous_format)
    generator = torch.Generator().manual_seed(seed)
    x = (torch.rand(shape, generator=generator) * 2 - 1).to(device=device, dtype=dtype)

    metadata = _metadata(tok)
    written: dict[str, Path] = {}
    fuser = torch._C._jit_texpr_fuser_enabled()
    torch._C._jit_set_texpr_fuser_enabled(False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=DeprecationWarning)
            warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
            encoder = torch.jit.trace(model.encoder_jit(), x, check_trace=False)
            traced = {"encoder": encoder}
            if "decoder" in names:
                traced["decoder"] = torch.jit.trace(model.decoder_jit(), encoder(x)[0], check_trace=False)
            if "autoencoder" in names:
                traced["autoencoder"] = torch.jit.trace(model, x, check_trace=False)
            for part, filename in names.items():
                written[part] = Path(output_dir) / filename
                _save_atomic(traced[part], written[part], metadata)
    finally:
        torch._C._jit_set_texpr_fuser_enabled(fuser)
    return written
