"""Saving a run: `iter_{N:09d}.pt` in NVIDIA's layout (vtok.checkpoint.TrainingFile) and its TorchScript exports.

Files are written atomically by a background thread from CPU copies (to a temporary name, flushed to the disk,
then renamed; a killed save's temporary is removed at the next start), then `latest_checkpoint.txt` names the new
file; `iter_N_{enc,dec,ema}.jit` are traced from the EMA weights on the CPU in that thread, so training goes on
meanwhile. With LoRA the thread first merges the adapters into NVIDIA's weights (vtok.checkpoint.lora_file), so
`iter_N.pt` and the jits hold plain networks, and writes the adapters alone as `iter_N_lora.safetensors`. The next
save, and the end of training, wait for it (and re-raise its error, if any). Reading a run back is resume.py's job
(docs/design.md#resume-order).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint.export import export_jit
from ..checkpoint.lora_file import merge_adapters, write_lora_file
from ..checkpoint.training_file import TrainingFile
from ..config.schema import CheckpointConfig
from ..io.atomic import atomic_path
from ..io.errors import describe_save_error
from ..networks.lora import LoRASettings

log = logging.getLogger(__name__)

LATEST_FILE = "latest_checkpoint.txt"
JIT_SUFFIXES = {"encoder": "_enc.jit", "decoder": "_dec.jit", "autoencoder": "_ema.jit"}


class CheckpointSaveError(RuntimeError):
    """Writing a checkpoint failed; the files written before it are untouched."""


# The only files keep_last ever deletes: a checkpoint and its jits, by vtok's exact names; and the temporaries
# (io.atomic's names) a killed save leaves of them.
SAVED_FILE = re.compile(r"^iter_(\d{9})(\.pt|_enc\.jit|_dec\.jit|_ema\.jit|_lora\.safetensors)$")
SAVE_TEMPORARY = re.compile(
    r"^\.(iter_\d{9}(_enc|_dec|_ema|_lora)?|latest_checkpoint)\.tmp\d+\.(pt|jit|txt|safetensors)$"
)


def save_durably(payload: dict[str, Any], path: Path) -> None:
    """torch.save through a Python file (so write errors keep their errno), flushed to the disk before returning,
    so neither a killed process nor a crashed machine leaves a half-written file once it is renamed."""
    with open(path, "wb") as handle:
        torch.save(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())


def saved_iterations(folder: Path) -> dict[int, list[Path]]:
    """{iteration: its files} of what vtok saved in `folder`, matched by exact name (a user's `iter_best.pt` is not)."""
    found: dict[int, list[Path]] = {}
    for path in Path(folder).iterdir() if Path(folder).is_dir() else ():
        match = SAVED_FILE.match(path.name)
        if match and path.is_file():
            found.setdefault(int(match[1]), []).append(path)
    return found


def checkpoint_name(iteration: int) -> str:
    return f"iter_{iteration:09d}.pt"


def lora_file_name(iteration: int) -> str:
    """`iter_N_lora.safetensors`: the LoRA adapters of `iter_N.pt`, alone."""
    return checkpoint_name(iteration)[:-3] + "_lora.safetensors"


def jit_names(iteration: int) -> dict[str, str]:
    """export_jit's `names` for one checkpoint: `iter_N_enc.jit`, `iter_N_dec.jit`, `iter_N_ema.jit`."""
    stem = checkpoint_name(iteration)[:-3]
    return {part: stem + suffix for part, suffix in JIT_SUFFIXES.items()}


def cpu_copy(obj: Any) -> Any:
    """A deep copy with every tensor on the CPU in the plain layout (never aliasing a tensor training will change)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True).contiguous()
    if isinstance(obj, dict):
        return {k: cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(cpu_copy(v) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: cpu_copy(getattr(obj, f.name)) for f in dataclasses.fields(obj)})
    return obj


@dataclass
class JitExport:
    """What the saver needs to trace the EMA network: a CPU network to load weights into, and how to trace it."""

    network: nn.Module  # a CPU tokenizer of the trained architecture, reused at every save
    example_shape: tuple[int, ...] | None
    dtype: torch.dtype


class Checkpointer:
    """Rank 0's writer of `iter_N.pt` (+ jits) under `folder`, one save in flight at a time."""

    def __init__(
        self, folder: Path, config: CheckpointConfig, jit: JitExport | None, lora: LoRASettings | None = None
    ) -> None:
        self.folder = Path(folder)
        self.config = config
        self.jit = jit
        self.lora = lora if lora is not None and lora.enabled else None
        self._thread: threading.Thread | None = None
        self._error: tuple[Path, BaseException] | None = None
        self._remove_stale_temporaries()

    def _remove_stale_temporaries(self) -> None:
        """Delete the temporary files of saves a killed run left half written (vtok's temporary names only)."""
        for stale in self.folder.glob(".*.tmp*"):
            if SAVE_TEMPORARY.match(stale.name):
                log.warning("removing %s, left half written by an interrupted save", stale)
                stale.unlink(missing_ok=True)

    def save(self, file: TrainingFile) -> None:
        """Write `file` (CPU tensors; with LoRA, unmerged) as `iter_N.pt` and, from its EMA weights, the jits, in
        the background."""
        self.join()
        self._thread = threading.Thread(
            target=self._write, args=(file,), name=f"vtok-save-{file.iteration}", daemon=False
        )
        self._thread.start()

    def join(self) -> None:
        """Wait for the save in flight; re-raise its error."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            (path, error), self._error = self._error, None
            latest = self.folder / LATEST_FILE
            kept = (
                f"the last complete checkpoint, {latest.read_text().strip()}, is intact"
                if latest.is_file()
                else "no earlier checkpoint exists"
            )
            failed = getattr(error, "path", None) or path
            raise CheckpointSaveError(f"saving {failed} failed: {describe_save_error(error)}; {kept}") from error

    def _write(self, file: TrainingFile) -> None:
        iteration = int(file.iteration or 0)
        path = self.folder / checkpoint_name(iteration)
        try:
            if self.lora is not None:
                file = merge_adapters(file, self.lora)
            with atomic_path(path) as tmp:
                save_durably(file.to_payload(), tmp)
            if file.lora:
                write_lora_file(self.folder / lora_file_name(iteration), file.lora)
            with atomic_path(self.folder / LATEST_FILE) as tmp:
                tmp.write_text(path.name + "\n")
            log.info("saved %s", path)
            if self.jit is not None and self.config.jit.enabled and file.ema is not None:
                self._export(iteration, {**file.network, **file.ema})
            self._prune(iteration)
        except BaseException as err:  # surfaced by join() in the training thread
            self._error = (path, err)

    def _export(self, iteration: int, state: dict[str, torch.Tensor]) -> None:
        network = self.jit.network
        own = network.state_dict()
        network.load_state_dict({k: state.get(k, v) for k, v in own.items()}, strict=True)
        written = export_jit(
            network,
            self.folder,
            names=jit_names(iteration),
            example_shape=self.jit.example_shape,
            dtype=self.jit.dtype,
            device="cpu",
        )
        log.info("exported %s from the EMA weights", ", ".join(p.name for p in written.values()))

    def _prune(self, newest: int) -> None:
        """Keep only the newest `keep_last` checkpoints (and their jits), by iteration number; only files vtok names
        `iter_{N:09d}.pt` / `iter_{N:09d}_{enc,dec,ema}.jit` are ever deleted, and never those of `newest`, the
        checkpoint just saved and named in latest_checkpoint.txt."""
        if self.config.keep_last is None:
            return
        saved = saved_iterations(self.folder)
        checkpoints = sorted(n for n, files in saved.items() if any(f.suffix == ".pt" for f in files))
        for old in checkpoints[: max(0, len(checkpoints) - self.config.keep_last)]:
            if old == newest:
                continue
            for part in saved[old]:
                part.unlink(missing_ok=True)


def export_template(build: Callable[[], nn.Module]) -> nn.Module:
    """A CPU network for jit exports, built without touching the global RNG (so runs stay reproducible)."""
    with torch.random.fork_rng(devices=[]):
        return build().to("cpu").eval()
