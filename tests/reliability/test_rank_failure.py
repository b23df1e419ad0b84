"""One rank of a two-process (gloo) run dies: the survivor exits with a clear one-line error instead of waiting
forever in a collective, and `torchrun --max-restarts=1` restarts the job from the last checkpoint to the end."""

from __future__ import annotations

import os
import signal
import sys
import time
from contextlib import ExitStack

from faulty import (
    ENV,
    children,
    free_port,
    job_folder,
    latest_checkpoint,
    launched,
    load_iteration,
    logged_iterations,
    torchrun,
    train_args,
    wait_for,
)

EXIT_WITHIN_S = 60


def test_survivor_of_a_dead_rank_exits_with_a_clear_error(tmp_path):
    port = free_port()
    args = train_args(
        tmp_path,
        "lost",
        "trainer.max_iter=100000",
        "checkpoint.save_iter=100000",
        "dataloader_train.batch_size=1",
        f"trainer.collective_timeout_s={EXIT_WITHIN_S}",
    )
    folder = job_folder(tmp_path, "lost")
    command = [sys.executable, "-m", "vtok.train", "--", *args]
    with ExitStack() as stack:
        ranks = [
            stack.enter_context(
                launched(
                    command,
                    tmp_path / f"{rank}.out",
                    {
                        **ENV,
                        "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": str(port),
                        "RANK": str(rank),
                        "LOCAL_RANK": str(rank),
                        "WORLD_SIZE": "2",
                        "LOCAL_WORLD_SIZE": "2",
                    },
                )
            )
            for rank in range(2)
        ]
        wait_for(lambda: len(logged_iterations(folder)) >= 2, 180, "two steps of both ranks")
        ranks[1].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        code = ranks[0].wait(EXIT_WITHIN_S + 30)
        waited = time.monotonic() - killed
    err = (tmp_path / "0.out").read_text(errors="replace")
    assert code == 1 and waited < EXIT_WITHIN_S + 30, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("vtok.train: error")]
    assert len(errors) == 1 and "lost contact with another rank" in errors[0], err[-3000:]
    assert "Traceback" not in err


def test_torchrun_restarts_a_job_whose_worker_died_from_its_last_checkpoint(tmp_path):
    max_iter = 6
    command = torchrun(
        None,
        "--max-restarts=1",
        "-m",
        "vtok.train",
        "--",
        *train_args(
            tmp_path,
            "restarted",
            f"trainer.max_iter={max_iter}",
            "checkpoint.save_iter=2",
            "dataloader_train.batch_size=1",
        ),
    )
    folder = job_folder(tmp_path, "restarted")
    with launched(command, tmp_path / "torchrun.out") as proc:
        wait_for(
            lambda: latest_checkpoint(folder) is not None and len(logged_iterations(folder)) >= 3,
            180,
            "a checkpoint and a step after it",
        )
        saved = load_iteration(latest_checkpoint(folder))
        workers = wait_for(lambda: children(proc.pid), 10, "torchrun's workers")
        os.kill(workers[-1], signal.SIGKILL)
        code = proc.wait(300)
    output = (tmp_path / "torchrun.out").read_text(errors="replace")
    assert code == 0, output[-3000:]
    log = (folder / "stdout.log").read_text()
    assert f"iteration: from {folder / 'checkpoints'}" in log and log.count("job folder") == 2, log[-3000:]
    resumed = [
        int(line.rsplit("(iteration ", 1)[1].split(")")[0])
        for line in log.splitlines()
        if "iteration: from " in line and "(iteration " in line
    ]
    assert resumed and resumed[-1] >= saved
    assert load_iteration(latest_checkpoint(folder)) == max_iter
