"""The one way vtok opens a model file: `torch.load(weights_only=True)` or `torch.jit.load`, nothing else.

Checkpoints are untrusted input: a pickle can run any code while it is loaded. Every entry point that reads a
`.pt`/`.pth` (load_tokenizer, `vtok inspect`, the inference flags, `export-jit`, the trainer's `load_path` and
resume, VGG16/LPIPS weights) comes through `read_torch_file`, which only ever unpickles tensors, plain containers
and Python scalars. See docs/design.md#reading-files.

The allow-list of extra globals is empty on purpose: vtok's own files and NVIDIA's `model.pt` layout (`model`,
`optimizer` with tensor `lr`/`step` and tuple `betas`, `scheduler`, `grad_scaler: {}`, `iteration`) hold nothing
that torch's weights-only unpickler does not already accept, so anything else is refused, naming the global.
A file is classified by its bytes before anything is unpickled, so an empty, truncated or foreign file fails in
one line naming it instead of a traceback from deep inside torch.
"""

from __future__ import annotations

import json
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

ALLOWED_GLOBALS: tuple[Any, ...] = ()  # nothing beyond torch's weights-only defaults (see the module docstring)
PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")  # legacy (non-zip) torch.save files
METADATA_FILE = "vtok.json"  # vtok's metadata inside the .jit files it exports


class CheckpointError(ValueError):
    """A model file that cannot be read safely, or is not one: the message names the file and says why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def file_kind(path: str | Path) -> str:
    """'jit' (a TorchScript archive), 'torch' (a torch.save file) or CheckpointError saying what the file is not."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such checkpoint: {path}")
    if path.is_dir():
        raise CheckpointError(path, "is a folder, not a checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(path, "empty file (an interrupted download or save?)")
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head[:2] in PICKLE_MAGIC:
        return "torch"
    if head != b"PK\x03\x04":
        raise CheckpointError(path, "not a PyTorch checkpoint or TorchScript file")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(path, f"truncated or corrupt ({_first_line(err)})") from None
    if any(name.split("/", 1)[-1].startswith("code/") for name in names):
        return "jit"
    if any(name.endswith("/data.pkl") or name == "data.pkl" for name in names):
        return "torch"
    raise CheckpointError(path, "a zip archive, but not a PyTorch checkpoint or TorchScript file")


def read_torch_file(path: str | Path) -> Any:
    """What a torch.save file holds, unpickled with weights_only=True; CheckpointError for anything else.

    A file that needs other Python objects (a pickled class, a function) is refused, naming them, without
    running them."""
    path = Path(path)
    if file_kind(path) != "torch":
        raise CheckpointError(path, "a TorchScript file, not a torch.save checkpoint")
    try:
        with torch.serialization.safe_globals(list(ALLOWED_GLOBALS)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(path, _refusal(path, err)) from None
    except Exception as err:  # torch raises RuntimeError, EOFError, ... on damaged files: all mean "unreadable"
        raise CheckpointError(path, f"truncated or corrupt ({_first_line(err)})") from None


def _refusal(path: Path, error: BaseException) -> str:
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # a damaged pickle: the loader's own message says why
        unsafe = []
    what = ", ".join(unsafe[:5]) + (" ..." if len(unsafe) > 5 else "") if unsafe else _first_line(error)
    return (
        f"refused: it needs Python objects beyond tensors and plain containers ({what}), which could run code "
        "when loaded; vtok reads checkpoints with weights_only=True only"
    )


def check_checkpoint_file(path: str | Path) -> str:
    """'jit' or 'torch' when `path` is a checkpoint vtok will read, found without loading any tensor (so commands can
    refuse a bad file before any work); CheckpointError naming the file otherwise."""
    path = Path(path)
    kind = file_kind(path)
    with open(path, "rb") as handle:
        legacy = handle.read(2) in PICKLE_MAGIC
    if kind == "torch" and not legacy:  # the pickle alone is scanned; legacy files are checked when read
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        except Exception as err:  # a damaged archive
            raise CheckpointError(path, f"truncated or corrupt ({_first_line(err)})") from None
        if unsafe:
            raise CheckpointError(path, _refusal(path, pickle.UnpicklingError("unsafe globals")))
    return kind


def read_jit_file(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[torch.jit.ScriptModule, dict]:
    """A TorchScript module and vtok's metadata inside it ({} when the file has none); CheckpointError otherwise."""
    path = Path(path)
    if file_kind(path) != "jit":
        raise CheckpointError(path, "a torch.save checkpoint, not a TorchScript file")
    extra = {METADATA_FILE: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=DeprecationWarning)  # TorchScript is deprecated; NVIDIA ships it
            module = torch.jit.load(str(path), map_location=map_location, _extra_files=extra)
    except Exception as err:  # a damaged archive raises RuntimeError from C++
        raise CheckpointError(path, f"truncated or corrupt TorchScript file ({_first_line(err)})") from None
    try:
        metadata = json.loads(extra[METADATA_FILE]) if extra[METADATA_FILE] else {}
    except ValueError:
        metadata = {}
    return module, metadata if isinstance(metadata, dict) else {}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A flat {name: tensor} dict from a torch.save file (e.g. torchvision's VGG16), or CheckpointError."""
    obj = read_torch_file(path)
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(path, f"expected a dict of tensors, found {type(obj).__name__}")
    return obj
