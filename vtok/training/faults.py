"""What the loop does about faults it can outlive: a stop signal, and steps whose gradients are not finite.

SIGTERM (what schedulers and torchrun send before killing a job) and SIGINT (Ctrl-C) only set a flag; the loop
reads it after each step, every rank agreeing through one all-reduce so none waits in a collective the others
left, then saves and stops. A second signal acts at once (SIGTERM kills; Ctrl-C raises KeyboardInterrupt, which
`train` turns into StoppedWithoutSaving, naming the checkpoint a rerun resumes from). Non-finite steps are skipped
by the trainer; `NonFiniteGuard` stops the run after `trainer.max_nonfinite_steps` of them in a row, naming the
iteration, the clips of the step and the last complete checkpoint.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterable
from pathlib import Path
from types import FrameType

import torch
import torch.distributed as dist

from .distributed import DistInfo
from .saving import LATEST_FILE

log = logging.getLogger(__name__)

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM: stopped on request after saving; rerun the command to resume
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
MAX_NAMED_FILES = 8


class NonFiniteStepsError(RuntimeError):
    """Too many optimizer steps in a row had a non-finite gradient norm."""


class StoppedWithoutSaving(KeyboardInterrupt):
    """Ctrl-C before the run could save (during set-up, or a second Ctrl-C); says what a rerun resumes from."""


class StopOnSignal:
    """Turns SIGTERM and SIGINT into a request the loop honours at the next step boundary (main thread only)."""

    def __init__(self, info: DistInfo) -> None:
        self.info = info
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}

    def uninstall(self) -> None:
        for signum in self._previous:
            signal.signal(signum, self._default(signum))
        self._previous = {}

    def _default(self, signum: int) -> object:
        previous = self._previous.get(signum)
        return signal.SIG_DFL if previous is None else previous

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signum
        if signum == signal.SIGINT:
            log.warning("Ctrl-C: saving at the end of this step, then stopping (press Ctrl-C again to stop now)")
        signal.signal(signum, self._default(signum))  # a second one acts at once

    def agreed(self) -> bool:
        """True when any rank was asked to stop (an all-reduce: every rank must call it at the same step)."""
        wanted = self.signal is not None
        if not self.info.distributed:
            return wanted
        flag = torch.tensor([float(wanted)], device=self.info.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


def last_complete_checkpoint(checkpoint_dir: Path) -> str:
    """The checkpoint `latest_checkpoint.txt` names (only complete files are ever named), or a note saying none."""
    latest = Path(checkpoint_dir) / LATEST_FILE
    if latest.is_file():
        return str(latest.parent / latest.read_text().strip())
    return f"none yet in {checkpoint_dir}"


class NonFiniteGuard:
    """Counts steps with a non-finite gradient norm in a row; raises after `limit` of them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_row = 0

    def check(self, grad_norm: torch.Tensor, iteration: int, files: Iterable[str], checkpoint_dir: Path) -> None:
        """Call after each step with its gradient norm, the step's clip files and the job's checkpoint folder."""
        if bool(torch.isfinite(grad_norm)):
            self.in_row = 0
            return
        self.in_row += 1
        if self.in_row < self.limit:
            return
        files = list(files)
        named = ", ".join(files[:MAX_NAMED_FILES]) + (
            f" (+{len(files) - MAX_NAMED_FILES} more)" if len(files) > MAX_NAMED_FILES else ""
        )
        raise NonFiniteStepsError(
            f"iteration {iteration}: {self.in_row} steps in a row had a non-finite loss or gradient (limit "
            f"trainer.max_nonfinite_steps={self.limit}); last batch: {named or 'unknown clips'}; last complete "
            f"checkpoint: {last_complete_checkpoint(checkpoint_dir)} (lower optimizer.lr, or check those clips)"
        )
