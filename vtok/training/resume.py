"""Where a run starts from, in NVIDIA's order (docs/design.md#resume-order), and putting that state into it.

1. the job's own newest checkpoint (`checkpoints/latest_checkpoint.txt`): everything, exactly;
2. else `checkpoint.load_path` (NVIDIA's `model.pt`, a release folder, a `.jit` or any file
   `vtok.load_tokenizer` reads; `.jit` files and jit-only folders give weights only), with the training state
   only when `checkpoint.load_training_state` (or the scheduler alone, `only_load_scheduler_state`);
3. else random weights at iteration 0.
Every file is read by vtok.checkpoint's weights-only reader; a file that needs more is refused in one line.
With LoRA, the file's weights (merged) are the base of fresh adapters, except when the run continues the file's
training (a resume, or `load_training_state`) and the file holds its unmerged adapters (`vtok_lora`): then the
base weights and adapters are restored as they were, exactly.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint.load import resolve_checkpoint
from ..checkpoint.lora_file import entry_settings, unmerged_state
from ..checkpoint.mismatch import StateMismatch, shapes_of
from ..checkpoint.reader import check_checkpoint_file
from ..checkpoint.record import VtokRecord
from ..checkpoint.state_dict import is_constant_buffer
from ..checkpoint.training_file import TrainingFile
from ..config.schema import CheckpointConfig, OptimizerConfig
from ..io.files import check_writable_folder
from ..networks.config import NAMED_CONFIGS, TokenizerConfig
from ..networks.lora import adapters, is_lora_key, load_lora_state_dict
from .ema import EMA
from .optim import adapt_optimizer_state, adapt_scheduler_state, apply_config_hparams, describe_hparams
from .saving import LATEST_FILE

log = logging.getLogger(__name__)


@dataclass
class Source:
    """Where a run's starting point comes from: `resume` (the job's own), `load_path`, or `scratch`."""

    kind: str
    path: Path | None = None
    file: TrainingFile = field(default_factory=lambda: TrainingFile(network={}))
    weights_only: bool = False  # a .jit or jit-only folder: no EMA, optimizer or iteration


def existing_load_path(config: CheckpointConfig) -> Path:
    """`checkpoint.load_path` as a path; FileNotFoundError, saying what to do, when nothing is there."""
    path = Path(config.load_path).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"checkpoint.load_path={config.load_path}: no such file or folder (download it with "
            "`vtok download-checkpoints`, or set checkpoint.load_path=null to start from scratch)"
        )
    return path


def source_path(checkpoint_dir: Path, config: CheckpointConfig) -> tuple[str, Path | None]:
    """Which start the run takes and from which file or folder: ("resume", iter_N.pt), ("load_path", path) or
    ("scratch", None)."""
    latest = Path(checkpoint_dir) / LATEST_FILE
    if latest.is_file():
        path = latest.parent / latest.read_text().strip()
        if not path.is_file():
            raise FileNotFoundError(
                f"{latest} names {path.name}, which does not exist; delete {latest} to start over, or put the file back"
            )
        return "resume", path
    if config.load_path is None:
        return "scratch", None
    path = existing_load_path(config)
    if path.is_dir() and (path / "model.pt").is_file():
        path = path / "model.pt"
    return "load_path", path


def check_start(checkpoint_dir: Path, config: CheckpointConfig) -> None:
    """Before anything is built: the job's folder can be written, and the checkpoint the run starts from exists and
    is one vtok reads (weights only)."""
    check_writable_folder(checkpoint_dir)
    _, path = source_path(checkpoint_dir, config)
    if path is not None and path.is_file():
        check_checkpoint_file(path)


def find_source(checkpoint_dir: Path, config: CheckpointConfig, network_name: str | None) -> Source:
    """The job's latest checkpoint, else `checkpoint.load_path`, else scratch."""
    kind, path = source_path(checkpoint_dir, config)
    if path is None:
        return Source("scratch")
    if path.is_file() and path.suffix != ".jit":
        return Source(kind, path, TrainingFile.read(path))
    _, _, contents = resolve_checkpoint(path, network_name, ema=None)
    weights = {k: v for c in contents for k, v in c.state.items()}
    return Source(kind, path, TrainingFile(network=weights), weights_only=True)


def continues_training(source: Source, config: CheckpointConfig) -> bool:
    """Whether the run takes over the file's training state: a resume, or `load_path` with `load_training_state`."""
    return source.kind == "resume" or (source.kind == "load_path" and config.load_training_state)


def loads_training_state(source: Source, config: CheckpointConfig) -> bool:
    """Whether the run takes the file's optimizer state (so the file's network must be this run's exactly)."""
    wanted = source.kind == "resume" or (source.kind == "load_path" and config.load_training_state)
    return wanted and not source.weights_only


def network_differences(record: VtokRecord, name: str | None, network: TokenizerConfig) -> list[str]:
    """How the network a vtok file records differs from this run's, field by field ([] when it is the same or the file
    has no record to compare)."""
    if record.name is None or record.name not in NAMED_CONFIGS:
        return []
    saved = {**NAMED_CONFIGS[record.name].to_dict(), **record.overrides}
    here = network.to_dict()
    differ = [f"model.config.network_name {record.name} in the file, {name} here"] if record.name != name else []
    return differ + [
        f"model.config.network.{key}={json.dumps(saved[key])} in the file, {json.dumps(here[key])} here"
        for key in here
        if key in saved and json.dumps(saved[key]) != json.dumps(here[key])
    ]


def check_same_network(
    source: Source, config: CheckpointConfig, network: nn.Module, name: str | None, network_config: TokenizerConfig
) -> None:
    """Before the optimizer is built: a file whose optimizer state this run loads was trained with this very network,
    else ValueError naming the fields (or, for a file without vtok's record, the weights) that differ."""
    if not loads_training_state(source, config):
        return
    instead = (
        "start another job.name"
        if source.kind == "resume"
        else "set checkpoint.load_training_state=false to take its weights only"
    )
    differ = network_differences(source.file.record, name, network_config)
    if differ:
        raise ValueError(
            f"{source.path} was trained with another network ({'; '.join(differ[:4])}), so its optimizer state "
            f"cannot be loaded: set those keys as the file has them, or {instead}"
        )
    own = {k: v for k, v in network.state_dict().items() if not is_constant_buffer(k) and not is_lora_key(k)}
    weights = {k: v for k, v in source.file.network.items() if not is_constant_buffer(k)}
    mismatch = StateMismatch.compare(shapes_of(weights), shapes_of(own))
    if mismatch:
        raise ValueError(
            f"{source.path} holds another network than the configured one ({mismatch.describe(limit=2)}), so its "
            f"optimizer state cannot be loaded: check model.config.network.*, or {instead}"
        )


def load_weights(network: nn.Module, state: dict[str, torch.Tensor], strict: bool, source: str) -> None:
    """NVIDIA's semantics: unknown keys ignored, missing keys an error when `strict`, shapes must match. LoRA
    adapters are not network weights here (`restore_lora` loads them)."""
    own = {k: v for k, v in network.state_dict().items() if not is_constant_buffer(k) and not is_lora_key(k)}
    weights = {k: v for k, v in state.items() if not is_constant_buffer(k)}
    mismatch = StateMismatch.compare(shapes_of(weights), shapes_of(own))
    if strict and mismatch.missing:
        raise KeyError(
            f"{source} lacks {len(mismatch.missing)} of the network's weights (first: "
            f"{', '.join(mismatch.missing[:3])}); set checkpoint.strict_resume=false to load it anyway"
        )
    if mismatch.wrong_shape:
        raise ValueError(
            f"{source} does not fit the configured network: "
            f"{StateMismatch(wrong_shape=mismatch.wrong_shape).describe(limit=4)}"
        )
    network.load_state_dict({k: weights[k] for k in own if k in weights}, strict=False)
    log.info(
        "weights: %d tensors from %s%s%s",
        len(own) - len(mismatch.missing),
        source,
        f", {len(mismatch.missing)} missing (kept at init)" if mismatch.missing else "",
        f", {len(mismatch.unexpected)} unknown ignored" if mismatch.unexpected else "",
    )


@torch.no_grad()
def restore_lora(source: Source, network: nn.Module, continues: bool) -> dict | None:
    """Put the file's unmerged adapters and the base weights they adapt into `network` when the run continues the
    file's training with LoRA; returns the entry used (None: the loaded, merged weights are the adapters' base)."""
    entry = source.file.lora
    if not adapters(network):
        if entry:
            log.info("LoRA: %s was trained with adapters; its merged weights are loaded as plain weights", source.path)
        return None
    if not (entry and continues):
        log.info("LoRA: new adapters on the weights of %s", source.path or "the random initialization")
        return None
    ours = next(iter(adapters(network).values())).scale
    if entry_settings(entry).scale != ours:
        raise ValueError(
            f"{source.path}'s adapters have scale alpha/rank={entry_settings(entry).scale:g}, this run's "
            f"{ours:g}: set model.config.lora.alpha and .rank as the run that wrote it"
        )
    base = {k: v for k, v in unmerged_state(entry).items() if not is_lora_key(k)}
    params = dict(network.named_parameters())
    for key, value in base.items():
        params[key].copy_(value)
    load_lora_state_dict(network, entry["adapters"])
    log.info("LoRA: %d adapters and the %d weights they adapt from %s", len(entry["adapters"]), len(base), source.path)
    return entry


def load_network_and_ema(
    source: Source, network: nn.Module, ema: EMA | None, strict: bool, continues: bool = True
) -> None:
    """Network weights (with LoRA, then the unmerged adapters: see `restore_lora`), then the EMA: the file's
    (`ema.network-*`, and the unmerged EMA adapters) when present, else the loaded weights."""
    if source.kind == "scratch":
        log.info("weights: random initialization (no job checkpoint, checkpoint.load_path=null)")
        restore_lora(source, network, continues)
        return
    file = source.file
    load_weights(network, file.network, strict, str(source.path))
    lora = restore_lora(source, network, continues)
    if ema is None:
        return
    ema.copy_from(network)
    if file.ema is not None:
        missing = [name for name in ema.load_network_state(file.ema) if not is_lora_key(name)]
        if lora is not None and lora.get("ema_adapters"):
            ema.load_network_state(unmerged_state(lora, ema=True))
        log.info(
            "EMA: from %s%s", source.path, f" ({len(missing)} weights missing, from the network)" if missing else ""
        )
    else:
        log.info("EMA: %s has none; starting it from the loaded weights", source.path)
    if source.kind == "resume":
        ema.updates = file.record.ema_updates


def load_training_state(
    source: Source,
    config: CheckpointConfig,
    optim_config: OptimizerConfig,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    load_optimizer: Callable[[dict[str, Any]], None] | None = None,
    network: nn.Module | None = None,
) -> int:
    """Optimizer, scheduler and iteration by NVIDIA's rules; returns the iteration to continue from.

    `load_optimizer` loads a torch-layout optimizer state (default: `optimizer.load_state_dict`); `network` (whose
    trainable parameters the optimizer steps) lets a file of all weights start a run that trains a part of them
    (see `fit_optimizer_state`)."""
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
    file = source.file
    missing = file.missing_training_state(scheduler_only)
    if missing:
        raise KeyError(
            f"{source.path} has no {', '.join(missing)} (top-level keys: {', '.join(file.top_level_keys)}); "
            "set checkpoint.load_training_state=false to load its weights only"
        )
    iteration = int(file.iteration)
    if not scheduler_only:
        state = fit_optimizer_state(adapt_optimizer_state(file.optimizer), optimizer, network, source)
        (load_optimizer or optimizer.load_state_dict)(state)
    scheduler.load_state_dict(adapt_scheduler_state(file.scheduler))
    scheduler.last_epoch = iteration
    what = "schedule and iteration" if scheduler_only else "optimizer state, schedule and iteration"
    from_file = config.load_optimizer_hparams and not scheduler_only
    if not from_file:
        apply_config_hparams(optimizer, scheduler, optim_config, iteration)
    log.info(
        "%s: from %s (iteration %d); lr/betas/eps/weight decay from the %s: %s",
        what,
        source.path,
        iteration,
        "file" if from_file else "config",
        describe_hparams(optimizer, scheduler),
    )
    return iteration


def fit_optimizer_state(
    state: dict[str, Any], optimizer: torch.optim.Optimizer, network: nn.Module | None, source: Source
) -> dict[str, Any]:
    """The file's (torch-layout) optimizer state for the parameters this run trains.

    The same count: as it is. A resume of another count: ValueError naming the keys (the job's config changed).
    A `load_path` file that trained every weight (NVIDIA's model.pt) into a run that trains a part of them
    (`model.config.trainable`): the moments of that part. Any other `load_path` file (LoRA adapters it never had):
    its hyper-parameters with fresh moments, said in one warning line."""
    theirs = sum(len(group.get("params", [])) for group in state.get("param_groups", []))
    ours = sum(len(group["params"]) for group in optimizer.param_groups)
    if theirs == ours:
        return state
    if source.kind == "resume" or network is None:
        raise ValueError(
            f"{source.path}'s optimizer state is for {theirs} parameters, this run trains {ours}: "
            "model.config.trainable or model.config.lora differ from the run that wrote it; set them as it did, "
            "or start a new job (another job.name) from it with checkpoint.load_path"
        )
    base = [(name, p) for name, p in network.named_parameters() if not is_lora_key(name)]
    trainable = [i for i, (_, p) in enumerate(base) if p.requires_grad]
    keep = trainable if theirs == len(base) and len(trainable) == ours else []
    if keep:
        log.info("optimizer moments of the %d trained weights from %s (it trained all %d)", ours, source.path, theirs)
    else:
        log.warning(
            "%s's optimizer state is for %d parameters, this run trains %d: its moments are not used (they start "
            "at zero); its hyper-parameters, schedule and iteration are",
            source.path,
            theirs,
            ours,
        )
    groups = state["param_groups"]
    return {
        "state": {new: state["state"][old] for new, old in enumerate(keep) if old in state.get("state", {})},
        "param_groups": [{**groups[0], "params": list(range(ours))}],
    }


def data_position(source: Source) -> int:
    """Micro-batches this job's loader already consumed (a resume), else 0."""
    return source.file.record.data_step if source.kind == "resume" else 0
