"""SIGTERM (preemption): the run saves a checkpoint at the iteration it reached and exits within a bounded time,
alone and under torchrun; the next start resumes from that checkpoint."""

from __future__ import annotations

import signal
import time

from faulty import (
    free_port,
    job_folder,
    latest_checkpoint,
    launched,
    load_iteration,
    logged_iterations,
    run_training,
    torchrun,
    train_args,
    training,
    wait_for,
)

from vtok.training.faults import PREEMPTED_EXIT_CODE

STOP_WITHIN_S = 30


def test_sigterm_saves_the_current_iteration_and_exits_cleanly(tmp_path):
    folder = job_folder(tmp_path, "preempted")
    with training(tmp_path, "preempted", "trainer.max_iter=100000", "checkpoint.save_iter=100000") as proc:
        wait_for(lambda: len(logged_iterations(folder)) >= 3, 120, "three training steps")
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        code = proc.wait(STOP_WITHIN_S)
    assert code == PREEMPTED_EXIT_CODE and time.monotonic() - sent < STOP_WITHIN_S
    reached = logged_iterations(folder)[-1]
    saved = latest_checkpoint(folder)
    assert saved is not None and saved.name == f"iter_{reached:09d}.pt" and load_iteration(saved) == reached
    assert "asked to stop (SIGTERM)" in (folder / "stdout.log").read_text()

    resumed = run_training(tmp_path, "preempted", f"trainer.max_iter={reached + 1}", "checkpoint.save_iter=100000")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert logged_iterations(folder)[-1] == reached + 1 and load_iteration(latest_checkpoint(folder)) == reached + 1


def test_sigterm_to_torchrun_stops_every_rank_with_one_checkpoint(tmp_path):
    command = torchrun(
        free_port(),
        "-m",
        "vtok.train",
        "--",
        *train_args(
            tmp_path,
            "ddp",
            "trainer.max_iter=100000",
            "checkpoint.save_iter=100000",
            "dataloader_train.batch_size=1",
            "dataloader_train.num_workers=1",
        ),
    )  # torchrun signals whole process groups: data workers too
    folder = job_folder(tmp_path, "ddp")
    with launched(command, tmp_path / "torchrun.out") as proc:
        wait_for(lambda: len(logged_iterations(folder)) >= 2, 180, "two training steps")
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(STOP_WITHIN_S)
    output = (tmp_path / "torchrun.out").read_text(errors="replace")
    assert code != 0, output[-3000:]  # torchrun reports the signal it got; its workers saved first
    saved = latest_checkpoint(folder)
    assert saved is not None, output[-3000:]
    assert load_iteration(saved) == logged_iterations(folder)[-1] >= 2
    assert (folder / "stdout.log").read_text().count("asked to stop (SIGTERM)") == 1  # rank 0's log
