"""`load_tokenizer`: one entry point for every checkpoint a user may hold (docs/design.md#training-files, #jit-files).

Accepted: a release folder (`checkpoints/Cosmos-Tokenize1-CV8x8x8-720p/`), a training checkpoint
(`model.pt`, `iter_N.pt`: nested or flat, `network.` prefix or bare, `_orig_mod`, bf16 or fp32, EMA on
request), or TorchScript files (`encoder.jit`, `decoder.jit`, `autoencoder.jit`, vtok's `*_enc.jit`...).
The model name comes from the argument, vtok's own metadata, the path, or the tensor shapes. Every file is
opened by `reader.py` (weights_only), and every strict load reports through `StateMismatch`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..networks.config import (
    MODEL_NAMES,
    TokenizerConfig,
    canonical_name,
    check_fields,
    get_config,
    model_name_in,
    overrides_of,
)
from ..networks.memory_format import default_memory_format, set_memory_format
from ..networks.tokenizer import Tokenizer, tokenizer_from_config
from .mismatch import StateMismatch, shapes_of
from .reader import CheckpointError, file_kind, read_jit_file
from .record import VtokRecord
from .state_dict import is_constant_buffer, jit_state_dict_to_network
from .training_file import TrainingFile

RELEASE_JIT_FILES = ("encoder.jit", "decoder.jit", "autoencoder.jit")
PARTS = ("encoder", "decoder")


@dataclass
class CheckpointContents:
    """What one file or folder holds, before it is put into a network."""

    path: Path
    kind: str  # "training", "jit"
    state: dict[str, torch.Tensor]  # bare network keys
    parts: set[str]  # subset of {"encoder", "decoder"}
    name: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def _parts_of(keys: Iterable[str]) -> set[str]:
    return {p for p in PARTS if any(k.startswith(f"{p}.") for k in keys)}


def _read_jit(path: Path) -> CheckpointContents:
    module, metadata = read_jit_file(path)
    state = jit_state_dict_to_network(module.state_dict())
    record = VtokRecord.from_dict(metadata)
    info = {"dtype": str(next(iter(state.values())).dtype).removeprefix("torch.")} if state else {}
    return CheckpointContents(path, "jit", state, _parts_of(state), record.name, record.overrides, info)


def _read_training(path: Path, ema: bool | None) -> CheckpointContents:
    file = TrainingFile.read(path)
    use_ema = file.ema is not None if ema is None else ema
    if use_ema and file.ema is None:
        raise CheckpointError(path, "EMA weights were asked for, but the checkpoint has no 'ema.network-*' entries")
    state = file.ema if use_ema else file.network
    info: dict[str, Any] = {"has_ema": file.ema is not None, "ema": use_ema, "top_level_keys": file.top_level_keys}
    if file.iteration is not None:
        info["iteration"] = file.iteration
    return CheckpointContents(path, "training", state, _parts_of(state), file.record.name, file.record.overrides, info)


def _release_files(folder: Path) -> list[Path]:
    jits = {p.name: p for p in folder.glob("*.jit")}
    if "encoder.jit" in jits and "decoder.jit" in jits:
        return [jits["encoder.jit"], jits["decoder.jit"]]
    if "autoencoder.jit" in jits:
        return [jits["autoencoder.jit"]]
    if (folder / "model.pt").exists():
        return [folder / "model.pt"]
    found = ", ".join(sorted(p.name for p in folder.iterdir())) or "nothing"
    raise ValueError(
        f"{folder}: no tokenizer checkpoint found (looked for encoder.jit + decoder.jit, "
        f"autoencoder.jit or model.pt; found {found})"
    )


def _sibling(path: Path) -> Path | None:
    """The other half of an encoder/decoder jit pair, by NVIDIA's and vtok's naming."""
    name = path.name
    for a, b in (("encoder.jit", "decoder.jit"), ("_enc.jit", "_dec.jit")):
        for x, y in ((a, b), (b, a)):
            if name.endswith(x):
                candidate = path.with_name(name[: -len(x)] + y)
                return candidate if candidate.exists() else None
    return None


def read_checkpoint(path: str | Path, ema: bool | None = False) -> CheckpointContents:
    """Read one checkpoint file (training `.pt` or TorchScript `.jit`) without building a network.

    `ema`: use a training checkpoint's EMA weights (True), its regular ones (False), or EMA when present (None).
    Any file that is not one raises CheckpointError (a ValueError) naming it; a missing one FileNotFoundError.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(path, "is a folder; pass it to load_tokenizer, which looks inside")
    contents = _read_jit(path) if file_kind(path) == "jit" else _read_training(path, ema)
    if not contents.state:
        raise CheckpointError(path, f"found no network tensors (top-level keys: {contents.info.get('top_level_keys')})")
    if not contents.parts:
        sample = ", ".join(list(contents.state)[:5])
        raise CheckpointError(
            path,
            f"none of its {len(contents.state)} tensors belong to a tokenizer encoder or "
            f"decoder (first keys: {sample})",
        )
    return contents


def _expected_shapes(name: str, overrides: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        tok = tokenizer_from_config(get_config(name, **overrides), name)
    return {k: tuple(v.shape) for k, v in tok.state_dict().items()}


def _width_overrides(state: dict[str, torch.Tensor]) -> dict[str, int]:
    """`channels` and `z_channels` read off the tensors, so reduced-width models are recognised too."""
    found: dict[str, int] = {}
    for key in ("encoder.conv_in.0.conv3d.weight", "encoder.conv_in.weight"):
        if key in state:
            found["channels"] = state[key].shape[0]
    for key in ("decoder.norm_out.norm.weight", "decoder.norm_out.weight"):
        if key in state and "channels" not in found:
            found["channels"] = state[key].shape[0] // 2
    for key, dim in (
        ("quant_conv.conv3d.weight", 1),
        ("quant_conv.weight", 1),
        ("post_quant_conv.conv3d.weight", 0),
        ("post_quant_conv.weight", 0),
    ):
        if key in state:
            found["z_channels"] = state[key].shape[dim]
    return found


def _mismatches(state: dict[str, torch.Tensor], parts: set[str], expected: dict[str, tuple[int, ...]]) -> StateMismatch:
    """Key and shape differences between checkpoint weights and a model, for the parts the file holds.

    Constant Haar/FSQ buffers are left out: training checkpoints drop them, jit files always keep them.
    """

    def required(key: str) -> bool:
        head = key.split(".")[0]
        in_parts = (
            head in parts
            or (head == "quant_conv" and "encoder" in parts)
            or (head == "post_quant_conv" and "decoder" in parts)
        )
        return in_parts and not is_constant_buffer(key)

    weights = {k: v for k, v in state.items() if not is_constant_buffer(k)}
    return StateMismatch.compare(shapes_of(weights), expected, required)


def infer_model_name(contents: CheckpointContents) -> tuple[str, dict[str, Any]]:
    """The one named model whose structure the tensors fit, with the width overrides they imply."""
    widths = _width_overrides(contents.state)
    fits = []
    for candidate in MODEL_NAMES:
        try:
            expected = _expected_shapes(candidate, widths)
        except ValueError:  # these widths are invalid for this family (e.g. image GroupNorm needs 32 | channels)
            continue
        if not _mismatches(contents.state, contents.parts, expected):
            fits.append(candidate)
    if len(fits) == 1:
        return fits[0], widths
    kind = "video" if any(".conv3d." in k for k in contents.state) else "image"
    described = (
        f"a {kind} tokenizer {'/'.join(sorted(contents.parts))} with {len(contents.state)} tensors and widths {widths}"
    )
    if fits:
        raise ValueError(
            f"{contents.path}: holds {described}, which fits several models ({', '.join(fits)}); "
            "pass name=/--tokenizer_type"
        )
    raise ValueError(
        f"{contents.path}: holds {described}, which fits none of {', '.join(MODEL_NAMES)}; "
        "pass name=/--tokenizer_type and the config overrides it was trained with"
    )


def _resolve_name(
    contents: Sequence[CheckpointContents], name: str | None, overrides: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """Model name and config overrides, from (in order) the caller, vtok's metadata, the path, the shapes.

    Config fields come from the widths read off the tensors, then vtok's metadata, then the caller.
    """
    merged = _merged_state(contents)
    tagged = next((c for c in contents if c.name), None)
    fields = {**_width_overrides(merged), **(tagged.overrides if tagged else {})}
    name = name or (tagged.name if tagged else None)
    for c in contents:
        name = name or model_name_in(c.path.parent.name) or model_name_in(c.path.name)
    if name is None:
        every_part = set().union(*(c.parts for c in contents))
        name, widths = infer_model_name(CheckpointContents(contents[0].path, contents[0].kind, merged, every_part))
        fields.update(widths)
    return canonical_name(name), {**fields, **overrides}


def _described(name: str, config: TokenizerConfig | None = None, overrides: dict[str, Any] | None = None) -> str:
    """`CV4x8x8-360p`, or `CV4x8x8-360p with channels=16, num_res_blocks=1`: short, never the whole config."""
    fields = overrides if config is None else overrides_of(name, config)
    listed = ", ".join(f"{k}={v}" for k, v in list((fields or {}).items())[:6])
    more = " ..." if fields and len(fields) > 6 else ""
    return name + (f" with {listed}{more}" if fields else "")


def _what_it_fits(contents: Sequence[CheckpointContents]) -> str:
    """' (the file records DV4x8x8-360p ...: check --tokenizer_type)', from vtok's record or the tensor shapes; ''
    when neither names a single model."""
    tagged = next((c for c in contents if c.name), None)
    if tagged is not None:
        return f" (the file records {_described(tagged.name, overrides=tagged.overrides)}: check --tokenizer_type)"
    every_part = set().union(*(c.parts for c in contents))
    try:
        other, widths = infer_model_name(
            CheckpointContents(contents[0].path, contents[0].kind, _merged_state(contents), every_part)
        )
    except ValueError:
        return ""
    return f" (its tensors fit {_described(other, overrides=widths)}: check --tokenizer_type)"


def _check_fits(contents: Sequence[CheckpointContents], name: str, fields: dict[str, Any]) -> TokenizerConfig:
    """The config of `name` with `fields`, after checking every file's tensors fit it: so a wrong model name fails
    here, once and naming the mismatch, before any graph runs (in jit mode nothing else would compare them)."""
    holds_video = any(".conv3d." in k for c in contents for k in c.state)
    if holds_video != get_config(name).is_video:
        kinds = ("video", "an image") if holds_video else ("image", "a video")
        raise ValueError(
            f"{contents[0].path} holds a {kinds[0]} tokenizer, but {name} is {kinds[1]} model{_what_it_fits(contents)}"
        )
    try:
        config = get_config(name, **fields)
        expected = _expected_shapes(name, fields)
    except ValueError as err:  # e.g. an image model's GroupNorm with a video checkpoint's widths
        raise ValueError(f"{contents[0].path} does not fit {name}: {err}{_what_it_fits(contents)}") from None
    for c in contents:
        mismatch = _mismatches(c.state, c.parts, expected)
        if mismatch:
            raise ValueError(
                f"{c.path} does not fit {_described(name, config)}: {mismatch.describe()}{_what_it_fits([c])}"
            )
    return config


def _merged_state(contents: Sequence[CheckpointContents]) -> dict[str, torch.Tensor]:
    return {k: v for c in contents for k, v in c.state.items()}


def _load_into(tok: Tokenizer, state: dict[str, torch.Tensor], parts: set[str], source: str) -> None:
    """Strict load of the parts a file holds: every weight matched by name and shape, nothing left over.

    Constant Haar/FSQ buffers in the file are compared with the model's own instead of loaded, so a
    file built with other wavelets or FSQ levels is refused rather than silently mixed.
    """
    own = tok.state_dict()
    mismatch = _mismatches(state, parts, shapes_of(own))
    buffers = dict(tok.named_buffers())
    for key, value in state.items():
        if not is_constant_buffer(key):
            continue
        ref = buffers.get(key)
        if ref is None:
            mismatch.unexpected.append(key)
        elif ref.shape != value.shape or not torch.equal(value, ref.to(value.dtype)):
            mismatch.wrong_shape.append(
                (
                    f"{key} (a constant buffer that differs from Cosmos-Tokenize1's)",
                    tuple(value.shape),
                    tuple(ref.shape),
                )
            )
    if mismatch:
        raise ValueError(f"{source} does not fit {_described(tok.name, tok.config)}: {mismatch.describe()}")
    tok.load_state_dict({k: v if is_constant_buffer(k) else state.get(k, v) for k, v in own.items()}, strict=True)


def checkpoint_files(path: str | Path | Sequence[str | Path], siblings: bool = True) -> list[Path]:
    """The files to read for `path`: a folder's release files, or the file(s) plus a jit's other half."""
    paths = [Path(p) for p in ([path] if isinstance(path, (str, Path)) else path)]
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += _release_files(p)
        else:
            files.append(p)
            sibling = _sibling(p) if siblings and len(paths) == 1 else None
            if sibling is not None:
                files.append(sibling)
    return files


def resolve_checkpoint(
    path: str | Path | Sequence[str | Path],
    name: str | None = None,
    *,
    ema: bool | None = False,
    siblings: bool = True,
    **overrides: Any,
) -> tuple[str, TokenizerConfig, list[CheckpointContents]]:
    """Model name, config and contents of a checkpoint, without building a network (see `load_tokenizer`)."""
    check_fields(overrides)
    contents = [read_checkpoint(f, ema=ema) for f in checkpoint_files(path, siblings)]
    model_name, model_overrides = _resolve_name(contents, name, overrides)
    return model_name, _check_fits(contents, model_name, model_overrides), contents


def load_tokenizer(
    path: str | Path | Sequence[str | Path],
    name: str | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    ema: bool | None = False,
    siblings: bool = True,
    memory_format: torch.memory_format | None = None,
    **overrides: Any,
) -> Tokenizer:
    """Build the right tokenizer for a checkpoint and load its weights strictly; returns it in eval mode.

    `path` may be a folder, one file, or several files (e.g. `[encoder.jit, decoder.jit]`). Given one
    half of an encoder/decoder jit pair, the other half is loaded too when it lies beside it; a
    tokenizer with only one half loaded refuses to run the other (`tok.loaded_parts` says which).
    `ema` picks the EMA weights of a training checkpoint (None: EMA when present); `siblings=False` loads
    only the files named. `overrides` are config fields (e.g. for a model trained with a changed architecture).
    `memory_format` is the weights' layout; None: the fastest for the device (channels_last_3d for video models).
    """
    model_name, config, contents = resolve_checkpoint(path, name, ema=ema, siblings=siblings, **overrides)
    tok = tokenizer_from_config(config, model_name)
    parts: set[str] = set()
    for c in contents:
        _load_into(tok, c.state, c.parts, str(c.path))
        parts |= c.parts
    tok.loaded_parts = frozenset(parts)
    tok.load_info = {
        "files": [str(c.path) for c in contents],
        "parts": {str(c.path): sorted(c.parts) for c in contents},
        "ema": any(c.info.get("ema", False) for c in contents),
    }
    tok = tok.to(device=device, dtype=dtype).eval()
    return set_memory_format(tok, memory_format or default_memory_format(config.is_video, torch.device(device)))
