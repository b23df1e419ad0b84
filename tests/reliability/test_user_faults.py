"""What a new user runs into (issue 13): every numbered fault, tried against the `vtok` commands in-process with a tiny
model. Nothing a user made is overwritten or deleted, no result is silently incomplete, and every failure is one line
and a non-zero exit, before any model loads where it can be known then. `test_itemNN_*` is item NN of the issue."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import synthetic_frames
from faulty import (
    ENV,
    EXPERIMENT,
    job_folder,
    latest_checkpoint,
    load_iteration,
    logged_iterations,
    train_args,
    wait_for,
)
from faulty import training as training_in_background

import vtok
from vtok.checkpoint.record import VtokRecord
from vtok.checkpoint.training_file import TrainingFile
from vtok.cli import evaluate as evaluate_cmd
from vtok.cli import export_jit as export_cmd
from vtok.cli import inference_args
from vtok.cli.main import main as vtok_main
from vtok.cli.train import main as train_main
from vtok.config.schema import CheckpointConfig
from vtok.evaluation import videos as evaluation_videos
from vtok.io import TOKEN_SUFFIXES, expand_patterns, write_video
from vtok.io.files import OUTPUT_MARK
from vtok.io.tokens import TokenMeta, read_token_meta, save_tokens
from vtok.training import run as training_run
from vtok.training.saving import Checkpointer, jit_names

MODEL = "CV4x8x8-360p"
SMALL = {"channels": 16, "num_res_blocks": 1}


# ---------------------------------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def models(tmp_path_factory) -> SimpleNamespace:
    """Two tiny CV4x8x8 models with different random weights: a release-like folder of vtok-exported jits, and a
    training checkpoint (cheaper to make than a trace)."""
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    release = root / f"Cosmos-Tokenize1-{MODEL}"
    parts = {"encoder": "encoder.jit", "decoder": "decoder.jit"}
    vtok.export_jit(vtok.build_tokenizer(MODEL, **SMALL).eval(), release, names=parts, dtype=torch.float32)
    torch.manual_seed(1)
    other = TrainingFile(vtok.build_tokenizer(MODEL, **SMALL).state_dict(), record=VtokRecord(MODEL, dict(SMALL)))
    torch.save(other.to_payload(), root / "other.pt")
    return SimpleNamespace(release=release, other=root / "other.pt")


def clips(folder: Path, *names: str, frames: int = 9) -> list[Path]:
    """Short generated mp4s (a different picture each) named `names` in `folder`."""
    return [write_video(folder / n, synthetic_frames(frames, 32, 32, seed=k), 8) for k, n in enumerate(names)]


def token_file(path: Path) -> Path:
    """A valid token file of MODEL (zeros), for commands that only need to read its metadata."""
    meta = TokenMeta(MODEL, dict(SMALL), "continuous", "video", "8/1", 9, 32, 32, (0, 0, 0, 0))
    return save_tokens(path, torch.zeros(16, 3, 4, 4), meta)


def digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


def error_line(err: str, prefix: str = "vtok: error: ") -> str:
    """The one message line (progress bars aside) of a failed command; fails unless there is exactly one."""
    lines = [line for line in err.splitlines() if line.strip() and "%|" not in line]  # tqdm's bars: "x:  50%|██"
    assert len(lines) == 1 and lines[0].startswith(prefix) and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if a command loads a model (for faults that must be found before any model work)."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the fault was reported")

    monkeypatch.setattr(inference_args, "load_engine", refuse)
    monkeypatch.setattr(export_cmd, "load_tokenizer", refuse)
    monkeypatch.setattr(evaluate_cmd, "find_lpips_weights", refuse)


class Hang(Exception):
    """Not an OSError (TimeoutError is one, and glob's walk swallows OSErrors)."""


@contextmanager
def time_limit(seconds: float):
    """Raise Hang in the code under test after `seconds` (a hang fails the test instead of stalling the suite)."""

    def expire(signum, frame):
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ---------------------------------------------------------------------------------------------------- data loss
def test_item01_demo_refuses_a_folder_it_did_not_make(tmp_path, capsys):
    folder = tmp_path / "thesis"
    (folder / "chapters").mkdir(parents=True)
    (folder / "thesis.tex").write_text("years of work")
    clips(folder, "talk.mp4")
    before = digests(folder)
    assert vtok_main(["demo", "--output_dir", str(folder), "--iterations", "1"]) == 1
    assert "holds files that no demo made" in error_line(capsys.readouterr().err)
    assert digests(folder) == before and sorted(p.name for p in folder.iterdir()) == [
        "chapters",
        "talk.mp4",
        "thesis.tex",
    ]

    (tmp_path / "notes.txt").write_text("a file")
    assert vtok_main(["demo", "--output_dir", str(tmp_path / "notes.txt" / "demo"), "--iterations", "1"]) == 1
    assert "notes.txt, one of its parents, is a file" in error_line(capsys.readouterr().err)


def test_item02_no_output_is_an_input_another_output_or_a_users_file(tmp_path, models, capsys, no_model):
    data = tmp_path / "data"
    clips(data, "a.mp4", "b.mp4")
    vtok.io.write_image(data / "c.png", synthetic_frames(1, 16, 16)[0])
    before = digests(data)
    checkpoint = ["--checkpoint", str(models.release)]
    for argv in (
        ["autoencode", "--video_pattern", f"{data}/*", *checkpoint, "--output_dir", str(data)],
        ["autoencode", "--image_pattern", f"{data}/*.png", *checkpoint, "--output_dir", str(data)],
        ["export-jit", "--checkpoint", str(models.release / "encoder.jit"), "--output_dir", str(models.release)],
    ):
        assert vtok_main(argv) == 1
        assert "is an input, and the " in error_line(capsys.readouterr().err)
    assert digests(data) == before

    pair = tmp_path / "pair"
    clips(pair, "a.mp4", "a_input.mp4")  # a's saved copy would be a_input.mp4, and so would a_input's output
    argv = ["autoencode", "--video_pattern", f"{pair}/*.mp4", *checkpoint, "--output_dir", str(tmp_path / "out")]
    assert vtok_main([*argv, "--save_input"]) == 1
    assert "would both be written to" in error_line(capsys.readouterr().err)

    mine = tmp_path / "mine"  # a folder of the user's that vtok did not make, with files vtok would write
    mine.mkdir()
    for name in ("a.mp4", "metrics.csv", "notes.txt"):
        (mine / name).write_bytes(b"the user's own " + name.encode())
    token_file(tmp_path / "tokens" / "a.safetensors")
    release = tmp_path / "nvidia" / f"Cosmos-Tokenize1-{MODEL}"  # NVIDIA's files carry no vtok record
    release.mkdir(parents=True)
    torch.jit.save(torch.jit.script(torch.nn.Identity()), str(release / "encoder.jit"))
    user_files = digests(mine), digests(release)
    for argv in (
        ["autoencode", "--video_pattern", str(data / "a.mp4"), *checkpoint, "--output_dir", str(mine)],
        [
            "decode",
            "--token_pattern",
            str(tmp_path / "tokens" / "a.safetensors"),
            *checkpoint,
            "--output_dir",
            str(mine),
        ],
        ["evaluate", "--video_pattern", str(data / "a.mp4"), *checkpoint, "--output_dir", str(mine)],
        ["export-jit", "--checkpoint", str(models.other), "--output_dir", str(release)],
    ):
        assert vtok_main(argv) == 1
        assert "exists and vtok did not write it" in error_line(capsys.readouterr().err)
    assert (digests(mine), digests(release)) == user_files


def test_item02_vtok_replaces_its_own_outputs_on_a_rerun(tmp_path, models, capsys):
    source = clips(tmp_path / "data", "a.mp4")[0]
    out = tmp_path / "out"
    argv = ["autoencode", "--video_pattern", str(source), "--checkpoint", str(models.release), "--output_dir", str(out)]
    assert vtok_main([*argv, "--save_input"]) == 0
    assert (out / OUTPUT_MARK).is_file() and (out / "a_input.mp4").is_file()
    assert vtok_main([*argv, "--save_input"]) == 0, capsys.readouterr().err


def test_item03_keep_last_prunes_only_vtoks_checkpoints_and_never_the_newest(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    users = {"iter_best.pt": b"best", "iter_1.pt": b"mine", "iter_000000001_notes.txt": b"notes", ".iter.tmp.pt": b"x"}
    for name, data in users.items():
        (folder / name).write_bytes(data)
    saver = Checkpointer(folder, CheckpointConfig(keep_last=1), jit=None)
    for iteration in (1, 2, 3):
        for name in jit_names(iteration).values():  # what the jit export writes beside each checkpoint
            (folder / name).write_bytes(b"jit")
        saver.save(TrainingFile(network={"w": torch.zeros(2)}, iteration=iteration))
        saver.join()
    kept = {*users, "latest_checkpoint.txt", "iter_000000003.pt", *jit_names(3).values()}
    assert {p.name for p in folder.iterdir()} == kept
    assert all((folder / name).read_bytes() == data for name, data in users.items())

    (folder / "iter_000000099.pt").write_bytes(b"a copy from elsewhere, with a higher number")
    saver.save(TrainingFile(network={"w": torch.zeros(2)}, iteration=4))
    saver.join()
    assert (folder / "iter_000000004.pt").is_file() and latest_checkpoint(tmp_path).name == "iter_000000004.pt"
    assert load_iteration(folder / "iter_000000004.pt") == 4


# ---------------------------------------------------------------------------------------------------- silently wrong
def test_item04_a_decoder_that_drops_frames_fails_the_file(tmp_path, models, capsys, monkeypatch):
    source = clips(tmp_path / "data", "a.mp4", frames=17)[0]
    real = inference_args.load_engine

    def losing_frames(*args, **kwargs):
        engine = real(*args, **kwargs)
        decode = engine.decode_fn
        engine.decode_fn = lambda z: decode(z)[:, :, :-4]
        engine.tokenizer = None  # a graph (jit) runs through decode_fn, in windows
        return engine

    monkeypatch.setattr(inference_args, "load_engine", losing_frames)
    common = ["--video_pattern", str(source), "--checkpoint", str(models.release)]
    assert vtok_main(["autoencode", *common, "--output_dir", str(tmp_path / "rec")]) == 1
    err = "".join(capsys.readouterr())  # the per-file line goes to stdout, with the summary
    assert f"vtok: skipped {source}: the decoder returned [1, 3, 13, 32, 32]" in err
    assert "must return [1, 3, 17, 32, 32]" in err
    assert not (tmp_path / "rec" / "a.mp4").exists()

    assert vtok_main(["evaluate", *common, "--output_dir", str(tmp_path / "eval")]) == 1
    scores = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert scores["settings"]["failed"] == [str(source)] and scores["models"]["A"]["videos"] == {}


def test_item05_encode_skips_only_tokens_this_run_would_write(tmp_path, models, capsys):
    source = clips(tmp_path / "data", "a.mp4")[0]
    out = tmp_path / "tokens"
    token = out / "a.safetensors"
    encode = ["encode", "--video_pattern", str(source), "--output_dir", str(out)]
    assert vtok_main([*encode, "--checkpoint", str(models.release)]) == 0
    first = token.read_bytes()
    for changed, field in (
        (["--checkpoint", str(models.other)], "checkpoint files"),
        (["--checkpoint", str(models.release), "--short_size", "16"], "short_size 0 (this run: 16)"),
        (["--checkpoint", str(models.release), "--nvidia_compat"], "processing 'stream' (this run: 'nvidia_compat')"),
        (["--checkpoint", str(models.release), "--attention_horizon", "1"], "attention_horizon"),
        (["--checkpoint", str(models.release), "--tile", "16"], "tile"),
    ):
        capsys.readouterr()
        assert vtok_main([*encode, *changed]) == 1
        line = error_line(capsys.readouterr().err)
        assert str(token) in line and field in line and "pass --overwrite to re-encode them" in line
        assert token.read_bytes() == first
    assert vtok_main([*encode, "--checkpoint", str(models.release)]) == 0
    assert "0 done, 1 skipped" in capsys.readouterr().out
    # an exact stream's tokens do not depend on the chunk size, so another --temporal_window is the same output
    assert vtok_main([*encode, "--checkpoint", str(models.release), "--temporal_window", "5"]) == 0
    assert "0 done, 1 skipped" in capsys.readouterr().out
    stored = read_token_meta(token).checkpoint_id
    assert vtok_main([*encode, "--checkpoint", str(models.other), "--overwrite"]) == 0
    assert token.read_bytes() != first and read_token_meta(token).checkpoint_id not in ("", stored)


def test_item06_a_file_named_like_a_pattern_is_that_file(tmp_path):
    named, other = clips(tmp_path, "clip[1].mp4", "clip1.mp4")
    assert expand_patterns(str(named)) == [named.resolve()]
    assert expand_patterns(str(tmp_path / "clip[1].mp4"), (".mp4",)) == [named.resolve()]
    assert expand_patterns(str(tmp_path / "clip[0-9].mp4")) == [other.resolve()]  # a glob is still a glob


# ---------------------------------------------------------------------------------------------------- hangs
def test_item07_double_star_ends_on_symlink_loops_and_skips_vtoks_outputs(tmp_path):
    root = tmp_path / "data"
    elsewhere = tmp_path / "elsewhere"
    for folder in (root / "a" / "b", elsewhere):
        folder.mkdir(parents=True)
    wanted = [root / "x.mp4", root / "a" / "y.mp4", root / "a" / "b" / "z.mp4", elsewhere / "w.mp4"]
    for path in wanted:
        path.write_bytes(b"video")
    os.symlink(root, root / "a" / "up")  # two loops: following them, glob's walk grows without end
    os.symlink(root / "a", root / "a" / "b" / "back")
    os.symlink(elsewhere, root / "linked")  # a linked folder is still followed, once
    with time_limit(20):
        assert expand_patterns(str(root / "**" / "*.mp4")) == sorted(p.resolve() for p in wanted)

    outputs = [root / "reconstructions" / "x.mp4", root / "a" / "decoded" / "y.mp4", root / "out" / "x.mp4"]
    for path in outputs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"an output")
    (root / "out" / OUTPUT_MARK).write_text("media\n")
    with time_limit(20):
        assert expand_patterns(str(root / "**" / "*.mp4")) == sorted(p.resolve() for p in wanted)
        assert expand_patterns(str(root / "*" / "*.mp4")) == sorted(p.resolve() for p in wanted[1:4:2])
    assert expand_patterns(str(root / "reconstructions" / "*.mp4")) == [outputs[0].resolve()]  # named: taken
    token = token_file(root / "a" / "tokens" / "y.safetensors")
    assert expand_patterns(str(root / "**" / "*.safetensors"), TOKEN_SUFFIXES) == [token.resolve()]


# ---------------------------------------------------------------------------------------------------- one line
def _limit_file_size(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_item08_a_full_disk_is_one_line_and_leaves_no_temporary(tmp_path, models):
    """RLIMIT_FSIZE fails writes with EFBIG as a full disk fails them with ENOSPC (and TorchScript's own writer
    aborted the process on it)."""
    source = clips(tmp_path / "data", "a.mp4")[0]
    runs = {
        "export-jit": (["export-jit", "--checkpoint", str(models.release), "--dtype", "float32"], 3_000_000),
        "encode": (["encode", "--video_pattern", str(source), "--checkpoint", str(models.release)], 1000),
    }
    for name, (argv, limit) in runs.items():
        out = tmp_path / name
        result = subprocess.run(
            [sys.executable, "-m", "vtok", *argv, "--output_dir", str(out)],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=120,
            preexec_fn=_limit_file_size(limit),
        )
        assert result.returncode == 1, result.stderr[-2000:]
        line = error_line(result.stderr)
        assert f"writing {out}/" in line and "failed: the file size limit was reached" in line
        assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MARK], name  # no temporary, nothing half written


def test_item09_an_output_folder_that_cannot_be_made_fails_first(tmp_path, models, capsys, no_model):
    source = clips(tmp_path / "data", "a.mp4")[0]
    token = token_file(tmp_path / "tokens" / "a.safetensors")
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file where a folder would go")
    out = ["--output_dir", str(blocker / "out"), "--checkpoint", str(models.release)]
    for argv in (
        ["autoencode", "--video_pattern", str(source), *out],
        ["encode", "--video_pattern", str(source), *out],
        ["decode", "--token_pattern", str(token), *out],
        ["evaluate", "--video_pattern", str(source), *out],
        ["export-jit", *out],
    ):
        assert vtok_main(argv) == 1
        assert f"cannot write to {blocker}/out: {blocker}, one of its parents, is a file" in error_line(
            capsys.readouterr().err
        )
    assert train_main(["--", *train_args(blocker / "runs", "job")]) == 1
    assert f"{blocker}, one of its parents, is a file" in error_line(capsys.readouterr().err, "vtok.train: error: ")


def test_item09_evaluate_writes_the_scores_it_has(tmp_path, models, capsys):
    good = clips(tmp_path / "data", "a.mp4")[0]
    (tmp_path / "data" / "b.mp4").write_bytes(b"not a video")
    argv = ["evaluate", "--video_pattern", str(tmp_path / "data"), "--checkpoint", str(models.release)]
    assert vtok_main([*argv, "--output_dir", str(tmp_path / "eval")]) == 1
    scores = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert list(scores["models"]["A"]["videos"]) == [str(good)] and scores["models"]["A"]["mean"]["videos"] == 1
    assert scores["settings"]["failed"] == [str(tmp_path / "data" / "b.mp4")]


@pytest.mark.parametrize("device", ["gpu", "cuda:99"])
def test_item10_a_device_that_does_not_exist_is_one_line(tmp_path, models, capsys, no_model, device):
    source = clips(tmp_path / "data", "a.mp4")[0]
    token = token_file(tmp_path / "tokens" / "a.safetensors")
    flags = ["--checkpoint", str(models.release), "--device", device, "--output_dir", str(tmp_path / "out")]
    for argv in (
        ["autoencode", "--video_pattern", str(source), *flags],
        ["encode", "--video_pattern", str(source), *flags],
        ["decode", "--token_pattern", str(token), *flags],
        ["evaluate", "--video_pattern", str(source), *flags],
        ["export-jit", *flags],
    ):
        assert vtok_main(argv) == 1
        assert f"{device!r}" in (line := error_line(capsys.readouterr().err)) and "this machine has: cpu" in line
    if not torch.cuda.is_available():
        assert train_main(["--", *train_args(tmp_path / "runs", "cuda", "trainer.device=cuda")]) == 1
        line = error_line(capsys.readouterr().err, "vtok.train: error")
        assert "trainer.device=cuda" in line and "this machine has: cpu" in line


@pytest.mark.parametrize(
    "override",
    ["channels=0", "num_res_blocks=0", "z_channels=0", "latent_channels=-2", "channels_mult=[]", "dropout=1.5"],
)
def test_item11_network_fields_out_of_range_fail_the_config_check(override, capsys):
    assert train_main(["--dryrun", f"experiment={EXPERIMENT}", f"model.config.network.{override}"]) == 2
    line = error_line(capsys.readouterr().err, "vtok.train: error: ")
    assert line.startswith(f"vtok.train: error: model.config.network.{override}: invalid model.config.network")


def test_item11_resuming_with_another_architecture_names_the_fields(tmp_path, capsys):
    assert train_main(["--", *train_args(tmp_path, "arch", "trainer.max_iter=1", "checkpoint.save_iter=1")]) == 0
    capsys.readouterr()
    code = train_main(
        ["--", *train_args(tmp_path, "arch", "trainer.max_iter=2", "model.config.network.num_res_blocks=1")]
    )
    assert code == 1
    line = error_line(capsys.readouterr().err, "vtok.train: error (rank 0): ")
    assert "iter_000000001.pt was trained with another network" in line
    assert "model.config.network.num_res_blocks=2 in the file, 1 here" in line and "parameter group" not in line


# item 12 (a corrupt or non-checkpoint checkpoint.load_path): test_untrusted_checkpoints.py,
# test_training_refuses_a_bad_load_path_or_resume_file and test_every_command_refuses_a_bad_checkpoint_in_one_line.


# ---------------------------------------------------------------------------------------------------- messages
def test_item13_ctrl_c_in_training_saves_like_sigterm(tmp_path):
    folder = job_folder(tmp_path, "ctrl_c")
    with training_in_background(tmp_path, "ctrl_c", "trainer.max_iter=100000", "checkpoint.save_iter=100000") as proc:
        wait_for(lambda: len(logged_iterations(folder)) >= 2, 120, "two training steps")
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
    assert code == 130
    reached = logged_iterations(folder)[-1]
    saved = latest_checkpoint(folder)
    assert saved is not None and saved.name == f"iter_{reached:09d}.pt" and load_iteration(saved) == reached
    assert "asked to stop (SIGINT)" in (folder / "stdout.log").read_text()


def test_item13_ctrl_c_before_a_save_says_what_a_rerun_resumes_from(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training_run, "Trainer", interrupted)
    assert train_main(["--", *train_args(tmp_path, "setup")]) == 130
    line = error_line(capsys.readouterr().err, "vtok.train: interrupted (rank 0): stopped without saving")
    assert "last complete checkpoint, which a rerun of it resumes from: none yet in" in line


def test_item13_ctrl_c_in_evaluate_writes_the_scores_so_far_and_says_so(tmp_path, models, capsys, monkeypatch):
    first, second = clips(tmp_path / "data", "a.mp4", "b.mp4")
    real = evaluation_videos.evaluate_video

    def ctrl_c_on_the_second(source, *args, **kwargs):
        if source == second:
            raise KeyboardInterrupt
        return real(source, *args, **kwargs)

    monkeypatch.setattr(evaluation_videos, "evaluate_video", ctrl_c_on_the_second)
    out = tmp_path / "eval"
    argv = ["evaluate", "--video_pattern", str(tmp_path / "data"), "--checkpoint", str(models.release)]
    assert vtok_main([*argv, "--output_dir", str(out)]) == 130
    line = error_line(capsys.readouterr().err, f"vtok: interrupted: evaluate stopped during {second}; wrote {out}")
    assert "metrics.json" in line and "1 of 2 videos" in line
    scores = json.loads((out / "metrics.json").read_text())
    assert scores["settings"]["interrupted"] is True and list(scores["models"]["A"]["videos"]) == [str(first)]


def test_item13_ctrl_c_in_encode_says_what_was_kept(tmp_path, models, capsys, monkeypatch):
    first, second = clips(tmp_path / "data", "a.mp4", "b.mp4")
    from vtok.cli import encode as encode_cmd

    real = encode_cmd.encode_video

    def ctrl_c_on_the_second(pipeline, source, *args):
        if source == second:
            raise KeyboardInterrupt
        return real(pipeline, source, *args)

    monkeypatch.setattr(encode_cmd, "encode_video", ctrl_c_on_the_second)
    argv = ["encode", "--video_pattern", str(tmp_path / "data"), "--checkpoint", str(models.release)]
    assert vtok_main([*argv, "--output_dir", str(tmp_path / "tokens")]) == 130
    line = error_line(capsys.readouterr().err, f"vtok: interrupted: encode stopped during {second}, which was not")
    assert "1 of 2 files finished" in line and "rerun the same command to continue" in line
    assert sorted(p.name for p in (tmp_path / "tokens").iterdir()) == [OUTPUT_MARK, "a.safetensors"]


def test_item14_a_model_name_that_does_not_fit_fails_once_up_front(tmp_path, models, capsys):
    clips(tmp_path / "data", "a.mp4", "b.mp4")
    jits = [
        "--checkpoint_enc",
        str(models.release / "encoder.jit"),
        "--checkpoint_dec",
        str(models.release / "decoder.jit"),
    ]
    video = ["autoencode", "--video_pattern", str(tmp_path / "data"), "--output_dir", str(tmp_path / "out")]
    for argv, message in (
        ([*video, *jits, "--mode", "jit", "--tokenizer_type", "DV4x8x8-360p"], "does not fit DV4x8x8-360p"),
        ([*video, *jits, "--mode", "jit", "--tokenizer_type", "CI8x8-360p"], "holds a video tokenizer, but CI8x8"),
        ([*video, "--checkpoint", str(models.release), "--tokenizer_type", "CI8x8-360p"], "is an image model"),
    ):
        assert vtok_main(argv) == 1
        line = error_line(capsys.readouterr().err)
        assert message in line and "the file records CV4x8x8-360p with channels=16" in line and len(line) < 500
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "flag,value",
    [
        ("--short_size", "0"),
        ("--short_size", "-5"),
        ("--output_fps", "0"),
        ("--output_fps", "-24"),
        ("--output_fps", "nan"),
        ("--crf", "-1"),
        ("--crf", "99"),
        ("--temporal_window", "0"),
        ("--tile", "-16"),
        ("--tile_overlap", "-8"),
    ],
)
def test_item15_non_positive_numbers_are_refused_when_parsed(flag, value, capsys, no_model):
    with pytest.raises(SystemExit) as stop:
        vtok_main(["autoencode", "--video_pattern", "nowhere/*.mp4", "--checkpoint", "none.pt", flag, value])
    assert stop.value.code == 2
    assert f"error: argument {flag}: must be " in capsys.readouterr().err.splitlines()[-1]


def test_item15_token_files_get_the_mode_every_other_file_gets(tmp_path):
    previous = os.umask(0o027)
    try:
        token = token_file(tmp_path / "a.safetensors")
        video = clips(tmp_path, "a.mp4")[0]
        text = tmp_path / "plain.txt"
        text.write_text("x")
    finally:
        os.umask(previous)
    assert {oct(p.stat().st_mode & 0o777) for p in (token, video, text)} == {oct(0o640)}
