"""One training job from a resolved config, alone or as one rank under torchrun: the library's `train(config)`.

The command line (`python -m vtok.train`, `vtok train`) parses the arguments, calls this and turns its errors into
exit codes; a Python user calls it directly with a Config from `vtok.config`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..config.arguments import resolve_now
from ..config.schema import Config
from .distributed import broadcast_object, close_distributed, init_distributed, is_peer_failure
from .faults import StoppedWithoutSaving, last_complete_checkpoint
from .memory_fit import apply_memory_budget
from .memory_plan import planned_device_type
from .resume import check_start
from .trainer import Trainer

log = logging.getLogger(__name__)


class PeerLostError(RuntimeError):
    """Another rank died, or a collective outlived the process-group timeout."""


@dataclass
class TrainResult:
    """How a job ended on this rank."""

    folder: Path  # the job folder
    iteration: int  # the last iteration trained (and saved)
    preempted: bool  # stopped early on SIGTERM or SIGINT, after saving; running the same job again resumes it
    stop_signal: int = 0  # the signal that stopped it (signal.SIGTERM, signal.SIGINT), when preempted
    scalars: dict[str, float] = field(default_factory=dict)  # the last logged training scalars


def current_rank() -> int:
    """This process's rank under torchrun (0 alone)."""
    return int(os.environ.get("RANK", "0"))


def train(config: Config) -> TrainResult:
    """Train `config` (validated) to `trainer.max_iter`, resuming the job if it has checkpoints.

    With `trainer.memory_budget_gb`, the cheapest memory settings that fit are chosen first (training.memory_fit).
    Raises ValueError (also when nothing fits the budget), FileNotFoundError, KeyError (bad data, checkpoints or
    settings, in one line), CheckpointSaveError, NonFiniteStepsError, PeerLostError, or StoppedWithoutSaving on a
    Ctrl-C that came before the loop could save; the process group is always closed."""
    check_start(resolve_now(config, datetime.now()).job.folder() / "checkpoints", config.checkpoint)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    config, fit = apply_memory_budget(config, world_size, planned_device_type(config.trainer.device))  # may refuse
    info = init_distributed(config.trainer)
    trainer = None
    try:
        config = resolve_now(config, broadcast_object(datetime.now(), info))
        trainer = Trainer(config, info)
        if fit is not None:
            log.info("%s", fit.describe(config.trainer.memory_budget_gb))
        scalars = trainer.train()
        return TrainResult(trainer.folder, trainer.iteration, trainer.preempted, trainer.stop_signal or 0, scalars)
    except KeyboardInterrupt:  # before the loop, or a second Ctrl-C: nothing more was saved
        checkpoints = config.job.folder() / "checkpoints"
        raise StoppedWithoutSaving(
            f"stopped without saving (the steps since the last save are lost); the job's last complete "
            f"checkpoint, which a rerun of it resumes from: {last_complete_checkpoint(checkpoints)}"
        ) from None
    except RuntimeError as err:
        if not (info.distributed and is_peer_failure(err)):
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PeerLostError(
            f"lost contact with another rank (it died, or a collective timed out after "
            f"trainer.collective_timeout_s={config.trainer.collective_timeout_s} s): {first}"
        ) from err
    finally:
        trainer = None  # DDP's reducer holds the process group: release it before the group is destroyed
        close_distributed()
