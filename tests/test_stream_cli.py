"""`vtok encode / decode / autoencode` stream exactly (torch mode), reproduce NVIDIA's video_cli on request
(`--nvidia_compat`), keep the approximate windows for `--mode jit`, and record in token files how they ran."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import small_tokenizer, synthetic_frames
from safetensors.torch import save_file

import vtok
from vtok.checkpoint.state_dict import training_state_dict
from vtok.cli.main import main as vtok_main
from vtok.inference import Pipeline, load_engine
from vtok.inference.pipeline import FrameLayout, to_frames, to_model_input
from vtok.io import read_video, write_video
from vtok.io.tokens import TokenMeta, load_tokens, read_token_meta

FRAMES, HEIGHT, WIDTH = 29, 36, 50  # two NVIDIA windows (17 + 12), sizes that need padding


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """clip.mp4 and small CV4x8x8 / DV4x8x8 training checkpoints."""
    root = tmp_path_factory.mktemp("stream_cli")
    write_video(root / "clip.mp4", synthetic_frames(FRAMES, HEIGHT, WIDTH), 24)
    for name in ("CV4x8x8-360p", "DV4x8x8-360p"):
        torch.manual_seed(0)
        tok = small_tokenizer(name)
        torch.save({"model": training_state_dict(tok.state_dict())}, root / f"{name[:2]}.pt")
    return root


def cli(*args: str | Path) -> int:
    return vtok_main([str(a) for a in args])


def encode(work: Path, model: str, out: str, *flags: str) -> tuple[torch.Tensor, TokenMeta]:
    common = ("--video_pattern", work / "clip.mp4", "--checkpoint", work / f"{model}.pt", "--dtype", "float32")
    assert cli("encode", *common, "--output_dir", work / out, *flags) == 0
    return load_tokens(work / out / "clip.safetensors")


def assert_same_tokens(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.is_floating_point():  # the attention over cached chunks rounds differently: 1e-7 measured
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    else:
        assert torch.equal(a, b)


@pytest.mark.parametrize("model", ["CV", "DV"])
def test_the_chunk_size_does_not_change_tokens_and_decode_equals_autoencode(work, model):
    short, meta = encode(work, model, f"{model}_17", "--temporal_window", "17")
    whole, whole_meta = encode(work, model, f"{model}_65", "--temporal_window", "65")  # one chunk: one pass
    assert_same_tokens(short, whole)
    assert (meta.processing, meta.exact, meta.attention_horizon, meta.pad_fill) == ("stream", True, "auto", "zero")
    assert meta.temporal_window == 17 and whole_meta.temporal_window == 65
    checkpoint = ("--checkpoint", work / f"{model}.pt", "--dtype", "float32")
    assert cli("decode", "--token_pattern", work / f"{model}_17" / "*.safetensors", *checkpoint) == 0
    assert cli("autoencode", "--video_pattern", work / "clip.mp4", *checkpoint, "--temporal_window", "17") == 0
    decoded, _ = read_video(work / f"{model}_17" / "decoded" / "clip.mp4")
    autoencoded, _ = read_video(work / "reconstructions" / "clip.mp4")
    assert decoded.shape == (FRAMES, HEIGHT, WIDTH, 3) and np.array_equal(decoded, autoencoded)


# ----- NVIDIA's video_cli, written again here from its description: the reference the flag must match


def nvidia_windows_reference(frames: np.ndarray) -> list[tuple[np.ndarray, int, int]]:
    """NVIDIA's windows of uint8 frames: 17 at a time, 0-padded (black) to multiples of 16 with the extra pixel
    at the bottom/right, edge frames repeated until (T - 1) % 8 == 0 (half in front); (window, front, length)."""
    _, height, width, _ = frames.shape
    pad_h, pad_w = -height % 16, -width % 16
    spatial = ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0))
    windows = []
    for start in range(0, len(frames), 17):
        window = frames[start : start + 17]
        missing = -(len(window) - 1) % 8
        front = missing // 2
        padded = np.pad(window, ((front, missing - front), (0, 0), (0, 0), (0, 0)), mode="edge")
        windows.append((np.pad(padded, spatial), front, len(window)))
    return windows


def nvidia_reference(tok: vtok.Tokenizer, frames: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """Tokens (concatenated per window) and reconstruction (uint8 frames) as NVIDIA's video_cli makes them."""
    _, height, width, _ = frames.shape
    tokens, reconstruction = [], []
    with torch.inference_mode():
        for window, front, length in nvidia_windows_reference(frames):
            x = torch.from_numpy(window).permute(3, 0, 1, 2)[None].float() / 255 * 2 - 1
            out = tok.encode(x)
            index = out[0] if tok.config.is_discrete else out
            tokens.append(index)
            y = tok.decode_indices(index) if tok.config.is_discrete else tok.decode(index)
            top, left = (window.shape[1] - height) // 2, (window.shape[2] - width) // 2
            y = y[:, :, front : front + length, top : top + height, left : left + width]
            reconstruction.append(((y.float() + 1) / 2).clamp(0, 1).mul(255).add(0.5).to(torch.uint8))
    time = 1 if tok.config.is_discrete else 2
    frames_out = torch.cat(reconstruction, 2)[0].permute(1, 2, 3, 0).numpy()
    return torch.cat(tokens, time)[0], frames_out


@pytest.mark.parametrize("model", ["CV", "DV"])
def test_nvidia_compat_is_nvidias_windowing(work, model):
    frames = read_video(work / "clip.mp4")[0]
    engine = load_engine(work / f"{model}.pt", device="cpu", dtype=torch.float32)
    tokens_ref, frames_ref = nvidia_reference(engine.tokenizer, frames)
    tokens, meta = encode(work, model, f"{model}_nvidia", "--nvidia_compat")
    assert_same_tokens(tokens, tokens_ref)
    assert (meta.processing, meta.exact, meta.temporal_window, meta.pad_fill) == ("nvidia_compat", False, 17, "black")
    assert meta.padding == (6, 6, 7, 7)  # 36x50 -> 48x64
    out = np.stack(list(Pipeline(engine, processing="nvidia_compat").autoencode(frames)))
    assert np.abs(out.astype(int) - frames_ref).max() <= 1
    checkpoint = ("--checkpoint", work / f"{model}.pt", "--dtype", "float32")
    assert cli("decode", "--token_pattern", work / f"{model}_nvidia" / "*.safetensors", *checkpoint) == 0
    target = work / f"{model}_nvidia_rec"
    assert (
        cli("autoencode", "--video_pattern", work / "clip.mp4", *checkpoint, "--nvidia_compat", "--output_dir", target)
        == 0
    )
    assert np.array_equal(
        read_video(work / f"{model}_nvidia" / "decoded" / "clip.mp4")[0], read_video(target / "clip.mp4")[0]
    )


def test_jit_mode_runs_approximate_windows_and_says_so(work, tmp_path, capsys):
    torch.manual_seed(0)
    tok = small_tokenizer("CV4x8x8-360p")
    vtok.export_jit(tok, tmp_path / "jit", example_shape=(1, 3, 5, 32, 32), dtype=torch.float32)
    jit = ("--checkpoint_enc", tmp_path / "jit" / "encoder.jit", "--mode", "jit", "--dtype", "float32")
    source = ("--video_pattern", work / "clip.mp4")
    assert cli("encode", *source, *jit, "--temporal_window", "9", "--output_dir", tmp_path / "tokens") == 0
    windows, meta = load_tokens(tmp_path / "tokens" / "clip.safetensors")
    assert (meta.processing, meta.exact, meta.temporal_window, meta.temporal_overlap) == ("windows", False, 9, 4)
    streamed, _ = encode(work, "CV", "CV_9", "--temporal_window", "9")
    assert windows.shape == streamed.shape and not torch.allclose(windows, streamed, atol=1e-3)  # windows differ
    with pytest.raises(SystemExit):
        cli("encode", "--help")
    assert "approximate" in capsys.readouterr().out
    for flags, message in (
        ((*jit, "--attention_horizon", "4"), "--attention_horizon applies to exact streaming"),
        (("--checkpoint", work / "CV.pt", "--temporal_overlap", "4"), "this run streams exactly"),
        (("--checkpoint", work / "CV.pt", "--nvidia_compat", "--tile", "16"), "has no spatial tiles"),
    ):
        assert cli("encode", *source, *flags, "--output_dir", tmp_path / "refused") == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("vtok: error:") and message in err[0], err


def test_token_files_without_processing_read_as_windows_and_are_not_skipped(work, tmp_path, capsys):
    tokens, meta = encode(work, "CV", "CV_old", "--temporal_window", "9")
    data = {k: v for k, v in asdict(meta).items() if k not in ("processing", "exact", "attention_horizon", "pad_fill")}
    old_file = tmp_path / "old" / "clip.safetensors"
    old_file.parent.mkdir()
    save_file(
        {"latent": tokens.contiguous()}, str(old_file), metadata={"vtok": json.dumps({**data, "temporal_overlap": 4})}
    )
    stored = read_token_meta(old_file)
    assert (stored.processing, stored.exact, stored.pad_fill) == ("windows", False, "zero")  # as files were made
    decoded = tmp_path / "decoded"
    checkpoint = ("--checkpoint", work / "CV.pt", "--dtype", "float32")
    assert cli("decode", "--token_pattern", old_file, *checkpoint, "--output_dir", decoded) == 0
    assert read_video(decoded / "clip.mp4")[0].shape == (FRAMES, HEIGHT, WIDTH, 3)
    capsys.readouterr()
    again = ("--video_pattern", work / "clip.mp4", *checkpoint, "--output_dir", tmp_path / "old")
    assert cli("encode", *again, "--temporal_window", "9") == 1
    assert "processing 'windows' (this run: 'stream')" in capsys.readouterr().err


def test_past_the_attention_horizon_the_command_says_so_once(work, tmp_path, capsys):
    second = tmp_path / "clips"
    for name in ("a.mp4", "b.mp4"):
        write_video(second / name, synthetic_frames(FRAMES, HEIGHT, WIDTH), 24)
    args = ("--video_pattern", second / "*.mp4", "--checkpoint", work / "CV.pt", "--dtype", "float32")
    assert cli("encode", *args, "--attention_horizon", "2", "--output_dir", tmp_path / "tokens") == 0
    err = capsys.readouterr().err
    assert err.count("vtok: note:") == 1 and "approximate" in err and "--attention_horizon" in err
    meta = read_token_meta(tmp_path / "tokens" / "a.safetensors")
    assert (meta.exact, meta.attention_horizon) == (False, "2")


def test_tiles_stream_exactly_in_time(work):
    frames = synthetic_frames(21, 40, 64)
    engine = load_engine(work / "CV.pt", device="cpu", dtype=torch.float32)
    tiles = {"tile": (24, 32), "tile_overlap": 8}
    small = Pipeline(engine, temporal_window=5, **tiles)
    tokens, layout, count = small.encode(frames)
    whole, _, _ = Pipeline(engine, temporal_window=21, **tiles).encode(frames)
    assert_same_tokens(tokens, whole)  # per-tile streams: the chunk size still changes nothing
    assert not small.last_exact  # tiles are close to whole frames, not equal
    untiled = Pipeline(engine, temporal_window=5)
    reference, _, _ = untiled.encode(frames)
    assert untiled.last_exact and tokens.shape == reference.shape
    decoded = np.stack(list(small.decode(tokens, layout, count)))
    assert np.array_equal(decoded, np.stack(list(small.autoencode(frames))))


@pytest.mark.parametrize("fill", ["zero", "black", "replicate", "reflect"])
def test_padding_fills(fill):
    frames = synthetic_frames(1, 5, 6)
    layout = FrameLayout.fit(5, 6, 8, fill)
    x = layout.pad(to_model_input(frames))
    assert x.shape[-2:] == (8, 8) and np.array_equal(to_frames(layout.crop(x)), frames)
    top, _, left, _ = layout.padding
    value = {"zero": 0.0, "black": -1.0}.get(fill)
    if value is not None:
        assert torch.all(x[..., :top, :] == value) and torch.all(x[..., :, :left] == value)
    elif fill == "replicate":
        assert torch.equal(x[..., 0, left:-1], x[..., top, left:-1])
    else:
        assert torch.equal(x[..., top - 1, :], x[..., top + 1, :])
