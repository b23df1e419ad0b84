"""Config and command-line mistakes: unknown keys, wrong types, impossible shapes, a missing checkpoint, a checkpoint
of another model. Each is one clear line and a non-zero exit, before a job folder or an output is written."""

from __future__ import annotations

import pytest
import torch
from conftest import small_tokenizer, synthetic_frames
from faulty import job_folder, train_args

from vtok.checkpoint.state_dict import training_state_dict
from vtok.cli.main import main
from vtok.cli.train import main as run
from vtok.io import write_video


def one_error_line(err: str, prefix: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), err
    return lines[0]


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.max_itr=3", "unknown config key 'trainer.max_itr'. Did you mean trainer.max_iter"),
        ("trainer.max_iter=ten", "trainer.max_iter: expected int, got 'ten'"),
        ("trainer.precision=fp64", "trainer.precision: expected one of"),
        ("dataloader_train.dataset.num_video_frames=10", "must be 1 + a multiple of 4"),
        ("dataloader_train.dataset.crop_width=36", "must be a multiple of 8 in both sides"),
    ],
    ids=["unknown-key", "wrong-type", "bad-choice", "frames-not-1-mod-4", "crop-not-multiple-of-8"],
)
def test_bad_training_overrides_fail_in_one_line_before_anything_is_written(tmp_path, capsys, override, message):
    assert run(train_args(tmp_path, "bad", override)) == 2
    assert message in one_error_line(capsys.readouterr().err, "vtok.train: error:")
    assert not any(tmp_path.iterdir())


def test_missing_load_path_fails_before_the_job_starts(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "model.pt"
    assert run(train_args(tmp_path, "missing", f"checkpoint.load_path={missing}")) == 1
    line = one_error_line(capsys.readouterr().err, "vtok.train: error:")
    assert f"checkpoint.load_path={missing}: no such file or folder" in line
    assert not job_folder(tmp_path, "missing").exists()


def test_checkpoint_of_another_model_fails_in_one_line_before_training(tmp_path, capsys):
    other = tmp_path / "dv.pt"
    torch.save({"model": training_state_dict(small_tokenizer("DV8x16x16-720p").state_dict())}, other)
    assert run(train_args(tmp_path, "other", f"checkpoint.load_path={other}")) == 1
    line = one_error_line(capsys.readouterr().err, "vtok.train: error (rank 0):")
    assert str(other) in line and ("does not fit the configured network" in line or "lacks" in line)
    assert not (job_folder(tmp_path, "other") / "checkpoints").exists()


@pytest.fixture(scope="module")
def inference_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    write_video(root / "clips" / "a.mp4", synthetic_frames(9, 32, 32), fps=24)
    torch.save({"model": training_state_dict(small_tokenizer("CV4x8x8-360p").state_dict())}, root / "cv.pt")
    return root


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--checkpoint", "{root}/missing.pt"), "no such checkpoint"),
        (("--checkpoint", "{root}/cv.pt", "--tokenizer_type", "DV4x8x8-360p"), "does not fit DV4x8x8-360p"),
        (("--checkpoint", "{root}/cv.pt", "--temporal_window", "10"), "--temporal_window must be 1 + a multiple of 4"),
    ],
    ids=["missing-checkpoint", "another-model", "window-not-1-mod-4"],
)
def test_autoencode_mistakes_fail_in_one_line_before_any_output(inference_inputs, tmp_path, capsys, extra, message):
    root = inference_inputs
    args = [a.format(root=root) for a in extra]
    code = main(
        [
            "autoencode",
            "--video_pattern",
            str(root / "clips" / "*.mp4"),
            "--output_dir",
            str(tmp_path / "out"),
            "--device",
            "cpu",
            *args,
        ]
    )
    assert code == 1
    assert message in one_error_line(capsys.readouterr().err, "vtok: error:")
    assert not (tmp_path / "out").exists()
