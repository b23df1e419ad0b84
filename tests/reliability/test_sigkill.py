"""SIGKILL at random points, some in the middle of writing a checkpoint: every file under a checkpoint's name is
complete, the next start resumes from the last complete checkpoint, and the run reaches the same final iteration."""

from __future__ import annotations

import random
import re
import signal
import time
from pathlib import Path

from faulty import (
    job_folder,
    latest_checkpoint,
    load_iteration,
    logged_iterations,
    logged_losses,
    run_training,
    training,
    wait_for,
)

MAX_ITER = 8
ARGS = (f"trainer.max_iter={MAX_ITER}", "checkpoint.save_iter=1")


def half_written(checkpoints: Path) -> list[Path]:
    """Temporary files of a save in progress (`.iter_N.tmpPID.pt`)."""
    return list(checkpoints.glob(".iter_*.tmp*")) if checkpoints.is_dir() else []


def assert_only_complete_checkpoints(checkpoints: Path) -> int:
    """Every `iter_N.pt` loads and holds iteration N; returns the iteration latest_checkpoint.txt names (0: none)."""
    for path in sorted(checkpoints.glob("iter_*.pt")):
        assert load_iteration(path) == int(path.stem[5:]), path
    latest = latest_checkpoint(checkpoints.parent)
    return load_iteration(latest) if latest is not None else 0


def resumed_from(folder: Path) -> list[int]:
    """The iteration each start of the job resumed from, in order."""
    text = (folder / "stdout.log").read_text(errors="replace")
    return [int(m) for m in re.findall(r"iteration: from \S+ \(iteration (\d+)\)", text)]


def test_random_sigkills_never_leave_a_partial_checkpoint_and_the_run_completes(tmp_path):
    rng = random.Random(7)
    folder = job_folder(tmp_path, "killed")
    checkpoints = folder / "checkpoints"
    expected_resumes, kills_mid_write = [], 0
    for kill in range(3):
        with training(tmp_path, "killed", *ARGS) as proc:
            done_before = len(logged_iterations(folder))
            wait_for(
                lambda done_before=done_before: len(logged_iterations(folder)) > done_before or proc.poll() is not None,
                120,
                "a training step",
            )
            if kill % 2 == 0:  # the moment a save is being written
                wait_for(lambda: half_written(checkpoints) or proc.poll() is not None, 60, "a save", poll=0.001)
                kills_mid_write += proc.poll() is None
            else:
                time.sleep(rng.uniform(0, 1.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        complete = assert_only_complete_checkpoints(checkpoints)
        if complete == MAX_ITER:
            break
        expected_resumes.append(complete)
    assert kills_mid_write >= 1, "no kill landed while a checkpoint was being written"

    result = run_training(tmp_path, "killed", *ARGS)
    assert result.returncode == 0, result.stderr[-3000:]
    assert assert_only_complete_checkpoints(checkpoints) == MAX_ITER
    assert not half_written(checkpoints), "the restart removes what killed saves left"
    assert resumed_from(folder) == [r for r in expected_resumes if r > 0]
    losses: dict[int, set[float]] = {}
    for iteration, loss in logged_losses(folder):
        losses.setdefault(iteration, set()).add(loss)
    assert sorted(losses) == list(range(1, MAX_ITER + 1))
    assert all(len(values) == 1 for values in losses.values()), losses  # a repeated step computes the same loss
