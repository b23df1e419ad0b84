"""Disk full while saving: the write fails (here: past RLIMIT_FSIZE, which fails writes with EFBIG as a full disk
fails them with ENOSPC), the previous checkpoint stays intact and named, and the error says what happened."""

from __future__ import annotations

import resource

from faulty import job_folder, latest_checkpoint, load_iteration, run_training, train_args

from vtok.cli.train import main as run

LIMIT_BYTES = 1 << 20  # far below one checkpoint (~28 MB), above the logs and the config


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT_BYTES, LIMIT_BYTES))


def test_a_failed_save_keeps_the_previous_checkpoint_and_says_why(tmp_path, capsys):
    assert run(train_args(tmp_path, "full", "trainer.max_iter=1", "checkpoint.save_iter=1")) == 0
    folder = job_folder(tmp_path, "full")
    first = latest_checkpoint(folder)
    before = first.read_bytes()

    result = run_training(tmp_path, "full", "trainer.max_iter=2", "checkpoint.save_iter=1", preexec_fn=_limit_file_size)
    assert result.returncode == 1, result.stderr[-2000:]
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("vtok.train: error")]
    assert "saving " + str(folder / "checkpoints" / "iter_000000002.pt") + " failed: the file size limit" in line
    assert f"the last complete checkpoint, {first.name}, is intact" in line
    assert "Traceback" not in result.stderr
    assert latest_checkpoint(folder) == first and first.read_bytes() == before and load_iteration(first) == 1
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == [first.name, "latest_checkpoint.txt"]
