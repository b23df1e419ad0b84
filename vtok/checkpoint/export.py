"""TorchScript export in NVIDIA's file contract (docs/design.md#jit-files), written atomically.

vtok's exports are drop-in replacements for the released `encoder.jit`/`decoder.jit`/`autoencoder.jit`
(same inputs, outputs and state_dict keys) and carry a small `vtok.json` with the model name and
config, so `load_tokenizer` needs no hint to read them back (and vtok knows the file as its own).
The graphs are serialized in memory and then written by Python, all or none, so a full disk is a WriteError naming
the file (TorchScript's own writer aborts the process instead), no temporary is left behind and no folder is left
with a new encoder beside an old decoder.
"""

from __future__ import annotations

import copy
import io
import json
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from ..io.atomic import write_files_atomic
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


def _serialized(module: torch.jit.ScriptModule, metadata: str) -> bytes:
    buffer = io.BytesIO()
    torch.jit.save(module, buffer, _extra_files={METADATA_FILE: metadata})
    return buffer.getvalue()


def is_vtok_export(path: str | Path) -> bool:
    """True when `path` is a TorchScript file vtok exported (it holds vtok's record): a file vtok may replace."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith(f"/extra/{METADATA_FILE}") for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


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
            files = {part: Path(output_dir) / filename for part, filename in names.items()}
            data = {files[part]: _serialized(traced[part], metadata) for part in names}
    finally:
        torch._C._jit_set_texpr_fuser_enabled(fuser)
    write_files_atomic(data, durable=True)  # all or none: never a new encoder beside an old decoder
    return files
