"""Checkpoints are untrusted input: a pickle that runs code when loaded, and empty, truncated or foreign files, given
to every entry point that reads a model file. The code never runs (its marker file never appears), every entry exits
non-zero with one line naming the file, and nothing was trained, written or made first. The same entry points still
read NVIDIA-layout and vtok-written files (the rest of the suite checks what they do with them)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from conftest import synthetic_frames
from faulty import train_args

import vtok
from vtok.checkpoint import TrainingFile
from vtok.cli.main import main as vtok_main
from vtok.cli.train import main as train_main
from vtok.io.video import write_video

MODEL = "CV4x8x8-360p"
SMALL = {"channels": 16, "num_res_blocks": 1}


class RunsCode:
    """Unpickling this object runs `touch <marker>`: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def valid_payload() -> dict:
    tok = vtok.build_tokenizer(MODEL, **SMALL)
    state = tok.state_dict()
    return TrainingFile(network=state, ema=state, iteration=3).to_payload()


def bad_file(folder: Path, fault: str, marker: Path, name: str = "model.pt") -> Path:
    """A checkpoint with one fault: code in its pickle (beside valid weights), truncated, empty, or not one."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if fault == "runs_code":
        torch.save({**valid_payload(), "optimizer": {"evil": RunsCode(marker)}}, path)
    elif fault == "truncated":
        torch.save(valid_payload(), path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif fault == "empty":
        path.write_bytes(b"")
    else:
        path.write_text("a page of notes, not a checkpoint\n")
    return path


FAULTS = ("runs_code", "truncated", "empty", "text")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("media") / "clip.mp4"
    write_video(path, synthetic_frames(9, 32, 32), fps=8)
    return path


def one_line_failure(code: int, err: str, path: Path) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0
    assert len(lines) == 1 and str(path) in lines[0], err


def cli_entries(path: Path, clip: Path, tmp: Path) -> dict[str, list[str]]:
    """Every `vtok` command that reads a model file, pointed at `path`."""
    token = tmp / "tokens" / "clip.safetensors"
    token.parent.mkdir(exist_ok=True)
    token.write_bytes(b"")
    out = ["--output_dir", str(tmp / "out")]
    return {
        "inspect": ["inspect", str(path)],
        "autoencode --checkpoint": ["autoencode", "--video_pattern", str(clip), "--checkpoint", str(path), *out],
        "encode --checkpoint_enc": ["encode", "--video_pattern", str(clip), "--checkpoint_enc", str(path), *out],
        "decode --checkpoint_dec": ["decode", "--token_pattern", str(token), "--checkpoint_dec", str(path), *out],
        "evaluate --checkpoint": ["evaluate", "--video_pattern", str(clip), "--checkpoint", str(path), *out],
        "export-jit": ["export-jit", "--checkpoint", str(path), *out],
        "demo (a release folder)": ["demo", "--checkpoints", str(path.parent.parent), *out, "--iterations", "1"],
    }


@pytest.mark.parametrize("fault", FAULTS)
def test_every_command_refuses_a_bad_checkpoint_in_one_line(tmp_path, fault, clip, capsys):
    marker = tmp_path / "code_ran"
    path = bad_file(tmp_path / "checkpoints" / f"Cosmos-Tokenize1-{MODEL}", fault, marker)
    for entry, argv in cli_entries(path, clip, tmp_path).items():
        code = vtok_main(argv)
        one_line_failure(code, capsys.readouterr().err, path)
        assert not marker.exists(), f"{entry}: the checkpoint's code ran"
        assert not (tmp_path / "out").exists(), f"{entry}: wrote output before refusing the checkpoint"
    with pytest.raises(ValueError, match=str(path)):
        vtok.load_tokenizer(path)
    assert not marker.exists()


@pytest.mark.parametrize("fault", FAULTS)
def test_training_refuses_a_bad_load_path_or_resume_file(tmp_path, fault, capsys):
    marker = tmp_path / "code_ran"
    path = bad_file(tmp_path / "weights", fault, marker)
    code = train_main(["--", *train_args(tmp_path / "runs", "load", f"checkpoint.load_path={path}")])
    one_line_failure(code, capsys.readouterr().err, path)
    assert not (tmp_path / "runs").exists(), "the job folder was made before the checkpoint was refused"

    checkpoints = tmp_path / "runs" / "posttraining" / "debug" / "resume" / "checkpoints"
    newest = bad_file(checkpoints, fault, marker, name="iter_000000005.pt")
    (checkpoints / "latest_checkpoint.txt").write_text(newest.name + "\n")
    code = train_main(["--", *train_args(tmp_path / "runs", "resume")])
    one_line_failure(code, capsys.readouterr().err, newest)
    assert not marker.exists()
    assert sorted(p.name for p in checkpoints.iterdir()) == ["iter_000000005.pt", "latest_checkpoint.txt"]


def test_auxiliary_weights_are_read_the_same_way(tmp_path, clip, capsys, monkeypatch):
    """VGG16 weights (the perceptual term) and LPIPS weights (`vtok evaluate`) are checkpoints too."""
    marker = tmp_path / "code_ran"
    vgg = bad_file(tmp_path / "vgg", "runs_code", marker, name="vgg16.pth")
    monkeypatch.setenv("VTOK_VGG16_WEIGHTS", str(vgg))
    code = train_main(["--", *train_args(tmp_path / "runs", "vgg", "loss.perceptual.enabled=true")])
    assert code != 0 and str(vgg) in capsys.readouterr().err
    lpips = tmp_path / "lpips"
    bad_file(lpips, "runs_code", marker, name="vgg16.pth")
    bad_file(lpips, "runs_code", marker, name="vgg.pth")
    release = tmp_path / "release" / f"Cosmos-Tokenize1-{MODEL}"
    vtok.export_jit(vtok.build_tokenizer(MODEL, **SMALL), release, dtype=torch.float32)
    code = vtok_main(
        [
            "evaluate",
            "--video_pattern",
            str(clip),
            "--checkpoint",
            str(release),
            "--lpips_weights",
            str(lpips),
            "--output_dir",
            str(tmp_path / "out"),
        ]
    )
    assert code != 0 and str(lpips) in capsys.readouterr().err
    assert not marker.exists()


def test_the_code_would_run_without_weights_only(tmp_path):
    """The fixture is a real attack: plain unpickling runs it (so the tests above test something)."""
    marker = tmp_path / "code_ran"
    path = bad_file(tmp_path, "runs_code", marker)
    torch.load(path, weights_only=False)
    assert marker.exists()
