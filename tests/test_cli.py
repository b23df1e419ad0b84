"""The `vtok` command line, run as a user runs it (a subprocess of the installed entry point's module)."""

from __future__ import annotations

from pathlib import Path

import torch
from conftest import vtok_cli

import vtok
from vtok.checkpoint.state_dict import ema_state_dict, training_state_dict


def write_training_checkpoint(path: Path) -> vtok.Tokenizer:
    torch.manual_seed(0)
    tok = vtok.build_tokenizer("CV4x8x8-360p", channels=16)
    state = tok.state_dict()
    model = {**training_state_dict(state), **{k: v + 0.5 for k, v in ema_state_dict(state).items()}}
    torch.save({"model": model, "iteration": 12}, path)
    return tok


def test_help_lists_the_commands():
    result = vtok_cli("--help")
    assert result.returncode == 0
    for command in (
        "demo",
        "download-checkpoints",
        "download-hdvila",
        "index",
        "train",
        "autoencode",
        "encode",
        "decode",
        "evaluate",
        "models",
        "inspect",
        "export-jit",
    ):
        assert command in result.stdout


def test_models_table_has_the_eight_models():
    result = vtok_cli("models")
    assert result.returncode == 0
    rows = [line for line in result.stdout.splitlines()[1:] if line.strip()]
    assert [r.split()[0] for r in rows] == list(vtok.MODEL_NAMES)
    assert "105,653,696" in result.stdout and "8x16x16" in result.stdout


def test_export_jit_uses_ema_by_default_and_regular_with_reg(tmp_path):
    ckpt = tmp_path / "iter_000000012.pt"
    tok = write_training_checkpoint(ckpt)
    key = "encoder.conv_in.0.conv3d.weight"

    result = vtok_cli("export-jit", "--checkpoint", str(ckpt), "--dtype", "float32", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "EMA weights" in result.stdout
    out = tmp_path / "iter_000000012_jit"
    ema = torch.jit.load(str(out / "encoder.jit")).state_dict()[key]
    torch.testing.assert_close(ema, tok.state_dict()[key] + 0.5)

    result = vtok_cli(
        "export-jit",
        "--checkpoint",
        str(ckpt),
        "--reg",
        "--output_dir",
        str(tmp_path / "reg"),
        "--dtype",
        "float32",
        "--input_shape",
        "1",
        "3",
        "9",
        "16",
        "16",
    )
    assert result.returncode == 0, result.stderr
    regular = torch.jit.load(str(tmp_path / "reg" / "encoder.jit")).state_dict()[key]
    torch.testing.assert_close(regular, tok.state_dict()[key])
    assert vtok.load_tokenizer(tmp_path / "reg").name == "CV4x8x8-360p"


def test_export_jit_refuses_a_single_frame_example(tmp_path):
    ckpt = tmp_path / "iter.pt"
    write_training_checkpoint(ckpt)
    result = vtok_cli("export-jit", "--checkpoint", str(ckpt), "--input_shape", "1", "3", "1", "16", "16")
    assert result.returncode == 1
    assert "vtok: error:" in result.stderr and "T >= 5" in result.stderr


def test_inspect_describes_a_checkpoint(tmp_path):
    ckpt = tmp_path / "iter.pt"
    write_training_checkpoint(ckpt)
    result = vtok_cli("inspect", str(ckpt))
    assert result.returncode == 0, result.stderr
    assert "model:    CV4x8x8-360p with {'channels': 16, 'z_channels': 16}" in result.stdout
    assert "iteration: 12" in result.stdout and "has_ema:  True" in result.stdout


def test_missing_checkpoint_is_one_clear_line(tmp_path):
    result = vtok_cli("export-jit", "--checkpoint", str(tmp_path / "nope.pt"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"vtok: error: no such checkpoint: {tmp_path / 'nope.pt'}"]
