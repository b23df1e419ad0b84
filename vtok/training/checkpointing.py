"""Training checkpoints in NVIDIA's layout (spec 2.2), their TorchScript exports (2.1) and the load order (2.3).

`iter_{N:09d}.pt` holds `model` (`network.*` and `ema.network-*`), `optimizer`, `scheduler`,
`grad_scaler: {}` and `iteration`, plus a `vtok` entry (model name, config overrides, data position, EMA
update count) that NVIDIA's loader ignores. Files are written atomically by a background thread from CPU
copies (to a temporary name, flushed to the disk, then renamed; a killed save's temporary is removed at the next
start), then `latest_checkpoint.txt` names the new file; `iter_N_{enc,dec,ema}.jit` are traced from the EMA
weights on the CPU in that thread, so training goes on meanwhile. The next save, and the end of training,
wait for it (and re-raise its error, if any).

Loading (`find_source`, `load_weights`, `load_training_state`): the job's latest checkpoint, else
`checkpoint.load_path` (NVIDIA's `model.pt`, a release folder, a `.jit` or any file `vtok.load_tokenizer`
reads; for `.jit` files and jit-only folders the weights only), else scratch.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint.export import export_jit
from ..checkpoint.load import resolve_checkpoint
from ..checkpoint.state_dict import has_ema, is_constant_buffer, model_entry, network_state_dict, training_state_dict
from ..config.schema import CheckpointConfig, OptimizerConfig
from ..io.atomic import atomic_path
from .ema import EMA
from .optim import adapt_optimizer_state, adapt_scheduler_state, apply_config_hparams, describe_hparams

log = logging.getLogger(__name__)

LATEST_FILE = "latest_checkpoint.txt"
JIT_SUFFIXES = {"encoder": "_enc.jit", "decoder": "_dec.jit", "autoencoder": "_ema.jit"}


class CheckpointSaveError(RuntimeError):
    """Writing a checkpoint failed; the files written before it are untouched."""


STORAGE_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EFBIG: "the file size limit was reached",
}


def describe_save_error(error: BaseException) -> str:
    """What went wrong writing a file, in words: 'the disk is full ([Errno 28] ...)' or the error itself.

    torch.save reports a failed write as a RuntimeError whose context is the OSError, so the chain is searched."""
    seen: BaseException | None = error
    while seen is not None:
        cause = STORAGE_ERRNOS.get(getattr(seen, "errno", None))
        if cause:
            return f"{cause} ({seen})"
        seen = seen.__cause__ or seen.__context__
    return (str(error) or type(error).__name__).strip()


def save_durably(payload: dict[str, Any], path: Path) -> None:
    """torch.save through a Python file (so write errors keep their errno), flushed to the disk before returning,
    so neither a killed process nor a crashed machine leaves a half-written file once it is renamed."""
    with open(path, "wb") as handle:
        torch.save(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())


def checkpoint_name(iteration: int) -> str:
    return f"iter_{iteration:09d}.pt"


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
    return obj


def checkpoint_payload(
    network_state: dict[str, torch.Tensor],
    ema_entries: dict[str, torch.Tensor],
    optimizer: dict,
    scheduler: dict,
    iteration: int,
    vtok_meta: dict[str, Any],
) -> dict[str, Any]:
    """NVIDIA's `iter_N.pt` dict from bare network keys, `ema.network-*` entries and optimizer/scheduler states."""
    model = {**training_state_dict(network_state), **ema_entries}
    return {
        "model": model,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "grad_scaler": {},
        "iteration": iteration,
        "vtok": vtok_meta,
    }


@dataclass
class JitExport:
    """What the saver needs to trace the EMA network: a CPU network to load weights into, and how to trace it."""

    network: nn.Module  # a CPU tokenizer of the trained architecture, reused at every save
    example_shape: tuple[int, ...] | None
    dtype: torch.dtype


class Checkpointer:
    """Rank 0's writer of `iter_N.pt` (+ jits) under `folder`, one save in flight at a time."""

    def __init__(self, folder: Path, config: CheckpointConfig, jit: JitExport | None) -> None:
        self.folder = Path(folder)
        self.config = config
        self.jit = jit
        self._thread: threading.Thread | None = None
        self._error: tuple[int, BaseException] | None = None
        self._remove_stale_temporaries()

    def _remove_stale_temporaries(self) -> None:
        """Delete the temporary files of saves a killed run left half written (never under a checkpoint's name)."""
        for stale in self.folder.glob(".*.tmp*"):
            log.warning("removing %s, left half written by an interrupted save", stale)
            stale.unlink(missing_ok=True)

    def save(self, iteration: int, payload: dict[str, Any], ema_network_state: dict[str, torch.Tensor] | None) -> None:
        """Write `payload` (CPU tensors) and, from `ema_network_state` (bare keys, CPU), the jits, in the background."""
        self.join()
        self._thread = threading.Thread(
            target=self._write,
            args=(iteration, payload, ema_network_state),
            name=f"vtok-save-{iteration}",
            daemon=False,
        )
        self._thread.start()

    def join(self) -> None:
        """Wait for the save in flight; re-raise its error."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            (iteration, error), self._error = self._error, None
            latest = self.folder / LATEST_FILE
            kept = (
                f"the last complete checkpoint, {latest.read_text().strip()}, is intact"
                if latest.is_file()
                else "no earlier checkpoint exists"
            )
            raise CheckpointSaveError(
                f"saving {self.folder / checkpoint_name(iteration)} failed: {describe_save_error(error)}; {kept}"
            ) from error

    def _write(
        self, iteration: int, payload: dict[str, Any], ema_network_state: dict[str, torch.Tensor] | None
    ) -> None:
        try:
            path = self.folder / checkpoint_name(iteration)
            with atomic_path(path) as tmp:
                save_durably(payload, tmp)
            with atomic_path(self.folder / LATEST_FILE) as tmp:
                tmp.write_text(path.name + "\n")
            log.info("saved %s", path)
            if self.jit is not None and self.config.jit.enabled and ema_network_state is not None:
                self._export(iteration, ema_network_state)
            self._prune()
        except BaseException as err:  # surfaced by join() in the training thread
            self._error = (iteration, err)

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

    def _prune(self) -> None:
        """Keep only the newest `keep_last` checkpoints (and their jits)."""
        if self.config.keep_last is None:
            return
        saved = sorted(self.folder.glob("iter_*.pt"))
        for old in saved[: max(0, len(saved) - self.config.keep_last)]:
            for part in [old, *(old.with_name(n) for n in jit_names(int(old.stem[5:])).values())]:
                part.unlink(missing_ok=True)


@dataclass
class Source:
    """Where a run's starting point comes from: `resume` (the job's own), `load_path`, or `scratch`."""

    kind: str
    path: Path | None = None
    payload: dict[str, Any] = field(default_factory=dict)  # a training file's dict; {"model": weights} otherwise
    weights_only: bool = False  # a .jit or jit-only folder: no EMA, optimizer or iteration


def read_training_file(path: Path) -> dict[str, Any]:
    """torch.load on the CPU; pickled objects beyond plain state dicts only after a warning."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # NVIDIA's files may pickle scheduler objects
        log.warning(
            "%s: not loadable with weights_only=True (%s); loading it with full unpickling",
            path,
            str(err).splitlines()[0] if str(err) else type(err).__name__,
        )
        obj = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a checkpoint dict, found {type(obj).__name__}")
    return obj


def existing_load_path(config: CheckpointConfig) -> Path:
    """`checkpoint.load_path` as a path; FileNotFoundError, saying what to do, when nothing is there."""
    path = Path(config.load_path).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"checkpoint.load_path={config.load_path}: no such file or folder (download it with "
            "`vtok download-checkpoints`, or set checkpoint.load_path=null to start from scratch)"
        )
    return path


def check_start(checkpoint_dir: Path, config: CheckpointConfig) -> None:
    """Before anything is built: the checkpoint `find_source` will read exists (a job checkpoint, else load_path)."""
    if not (Path(checkpoint_dir) / LATEST_FILE).is_file() and config.load_path is not None:
        existing_load_path(config)


def find_source(checkpoint_dir: Path, config: CheckpointConfig, network_name: str | None) -> Source:
    """The job's latest checkpoint, else `checkpoint.load_path`, else scratch (spec 2.3)."""
    latest = checkpoint_dir / LATEST_FILE
    if latest.is_file():
        path = checkpoint_dir / latest.read_text().strip()
        if not path.is_file():
            raise FileNotFoundError(
                f"{latest} names {path.name}, which does not exist; delete {latest} to start over, or put the file back"
            )
        return Source("resume", path, read_training_file(path))
    if config.load_path is None:
        return Source("scratch")
    path = existing_load_path(config)
    if path.is_dir() and (path / "model.pt").is_file():
        path = path / "model.pt"
    if path.is_file() and path.suffix != ".jit":
        return Source("load_path", path, read_training_file(path))
    _, _, contents = resolve_checkpoint(path, network_name, ema=None)
    weights = {k: v for c in contents for k, v in c.state.items()}
    return Source("load_path", path, {"model": {"network." + k: v for k, v in weights.items()}}, weights_only=True)


def load_weights(network: nn.Module, state: dict[str, torch.Tensor], strict: bool, source: str) -> None:
    """NVIDIA's semantics: unknown keys ignored, missing keys an error when `strict`, shapes must match."""
    own = {k: v for k, v in network.state_dict().items() if not is_constant_buffer(k)}
    missing = [k for k in own if k not in state]
    if strict and missing:
        raise KeyError(
            f"{source} lacks {len(missing)} of the network's weights (first: {', '.join(missing[:3])}); "
            "set checkpoint.strict_resume=false to load it anyway"
        )
    bad = [
        f"{k}: file {list(state[k].shape)} vs model {list(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if bad:
        raise ValueError(f"{source} does not fit the configured network: {'; '.join(bad[:4])}")
    network.load_state_dict({k: state[k] for k in own if k in state}, strict=False)
    ignored = [k for k in state if k not in own and not is_constant_buffer(k)]
    log.info(
        "weights: %d tensors from %s%s%s",
        len(own) - len(missing),
        source,
        f", {len(missing)} missing (kept at init)" if missing else "",
        f", {len(ignored)} unknown ignored" if ignored else "",
    )


def load_network_and_ema(source: Source, network: nn.Module, ema: EMA | None, strict: bool) -> None:
    """Network weights, then the EMA: the file's (`ema.network-*`) when present, else the loaded weights."""
    if source.kind == "scratch":
        log.info("weights: random initialization (no job checkpoint, checkpoint.load_path=null)")
        return
    entry = model_entry(source.payload)
    load_weights(network, network_state_dict(entry), strict, str(source.path))
    if ema is None:
        return
    ema.copy_from(network)
    if has_ema(entry):
        missing = ema.load_network_state(network_state_dict(entry, ema=True))
        log.info(
            "EMA: from %s%s", source.path, f" ({len(missing)} weights missing, from the network)" if missing else ""
        )
    else:
        log.info("EMA: %s has none; starting it from the loaded weights", source.path)
    if source.kind == "resume":
        ema.updates = int(source.payload.get("vtok", {}).get("ema_updates", 0))


def load_training_state(
    source: Source,
    config: CheckpointConfig,
    optim_config: OptimizerConfig,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    load_optimizer: Callable[[dict[str, Any]], None] | None = None,
) -> int:
    """Optimizer, scheduler and iteration as spec 2.3 says; returns the iteration to continue from.

    `load_optimizer` loads a torch-layout optimizer state (default: `optimizer.load_state_dict`)."""
    wanted = source.kind == "resume" or (source.kind == "load_path" and config.load_training_state)
    scheduler_only = source.kind == "load_path" and config.only_load_scheduler_state and not wanted
    if source.weights_only and (wanted or scheduler_only):
        log.warning("%s holds weights only: optimizer, schedule and iteration start from the config", source.path)
        wanted = scheduler_only = False
    if not (wanted or scheduler_only):
        log.info(
            "optimizer, schedule and iteration: from the config, iteration 0: %s",
            describe_hparams(optimizer, scheduler),
        )
        return 0
    payload = source.payload
    missing = [
        k
        for k in (("scheduler", "iteration") if scheduler_only else ("optimizer", "scheduler", "iteration"))
        if k not in payload
    ]
    if missing:
        raise KeyError(
            f"{source.path} has no {', '.join(missing)} (top-level keys: {', '.join(map(str, payload))}); "
            "set checkpoint.load_training_state=false to load its weights only"
        )
    iteration = int(payload["iteration"])
    if not scheduler_only:
        (load_optimizer or optimizer.load_state_dict)(adapt_optimizer_state(payload["optimizer"]))
    scheduler.load_state_dict(adapt_scheduler_state(payload["scheduler"]))
    scheduler.last_epoch = iteration
    what = "schedule and iteration" if scheduler_only else "optimizer state, schedule and iteration"
    if config.load_optimizer_hparams and not scheduler_only:
        log.info(
            "%s: from %s (iteration %d); lr/betas/eps/weight decay from the file: %s",
            what,
            source.path,
            iteration,
            describe_hparams(optimizer, scheduler),
        )
    else:
        apply_config_hparams(optimizer, scheduler, optim_config, iteration)
        log.info(
            "%s: from %s (iteration %d); lr/betas/eps/weight decay from the config: %s",
            what,
            source.path,
            iteration,
            describe_hparams(optimizer, scheduler),
        )
    return iteration


def data_position(source: Source) -> int:
    """Micro-batches this job's loader already consumed (a resume), else 0."""
    return int(source.payload.get("vtok", {}).get("data_step", 0)) if source.kind == "resume" else 0


def export_template(build: Callable[[], nn.Module]) -> nn.Module:
    """A CPU network for jit exports, built without touching the global RNG (so runs stay reproducible)."""
    with torch.random.fork_rng(devices=[]):
        return build().to("cpu").eval()
