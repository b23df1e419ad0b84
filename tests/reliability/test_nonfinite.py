"""Non-finite loss or gradients: each such step is skipped and counted; after `trainer.max_nonfinite_steps` in a
row the run stops with the iteration, the files of the batch and the last complete checkpoint in one line."""

from __future__ import annotations

import re

from conftest import synthetic_frames
from faulty import job_folder, train_args

from vtok.cli.train import main as run
from vtok.io import write_video


def test_steps_that_blow_up_are_skipped_then_the_run_stops_naming_the_clips(tmp_path, capsys):
    videos = tmp_path / "videos"
    for name in ("first.mp4", "second.mp4"):
        write_video(videos / name, synthetic_frames(12, 40, 40, seed=len(name)), fps=24)
    # A learning rate of 1e30 sends the weights to ~1e30 in one step: every later forward pass overflows.
    code = run(
        train_args(
            tmp_path,
            "nan",
            f"dataloader_train.dataset.video_pattern={videos}/*.mp4",
            "dataloader_train.dataset.val_fraction=0",
            "dataloader_train.batch_size=1",
            "optimizer.lr=1e30",
            "scheduler.warmup=0",
            "trainer.max_iter=50",
            "checkpoint.save_iter=2",
            "trainer.max_nonfinite_steps=2",
        )
    )
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1, err
    message = err.splitlines()[0]
    stopped_at = int(re.search(r"iteration (\d+): 2 steps in a row had a non-finite", message)[1])
    assert re.search(r"videos/(first|second)\.mp4@\d+", message), message
    checkpoints = job_folder(tmp_path, "nan") / "checkpoints"
    assert f"last complete checkpoint: {checkpoints / f'iter_{stopped_at - 1:09d}.pt'}" in message
    log = (job_folder(tmp_path, "nan") / "stdout.log").read_text()
    skipped = [int(i) for i in re.findall(r"iteration (\d+): gradient norm \S+, step skipped", log)]
    assert skipped == [stopped_at - 2, stopped_at - 1]  # logged with the iteration the step started from
