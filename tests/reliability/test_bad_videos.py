"""Bad data: zero-byte files, truncated mp4s, audio-only files, text named .mp4, videos shorter than a clip,
1-pixel-wide and odd-sized videos, variable frame rate. The training loader, `vtok index` and `vtok autoencode`
each skip what cannot be read, count it and name it, and handle every readable video."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from conftest import small_tokenizer, synthetic_frames

from vtok.checkpoint.state_dict import training_state_dict
from vtok.cli.main import main
from vtok.data import DatasetConfig, LoaderConfig, build_dataloader
from vtok.io import probe_video, write_video

CLIP = 9
UNREADABLE = {"empty.mp4": "", "truncated.mp4": "", "audio_only.mp4": "no video stream", "text.mp4": ""}
READABLE = {
    "good.mp4": (16, 40, 48),
    "one_pixel_wide.mp4": (12, 40, 1),
    "odd_sized.mp4": (12, 37, 53),
    "vfr.mp4": (12, 40, 48),
    "short.mp4": (4, 40, 48),
}
VFR_PTS_MS = [0, 40, 50, 130, 140, 200, 330, 340, 400, 420, 500, 560]


def encode(path: Path, frames: np.ndarray, pix_fmt: str = "yuv420p", pts_ms: list[int] | None = None) -> Path:
    """H.264 with PyAV: yuv444p allows odd and 1-pixel sizes; `pts_ms` gives each frame its own timestamp."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = pix_fmt
        stream.options = {"bf": "0"}
        if pts_ms is not None:
            stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        for k, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[k], Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def audio_only(path: Path) -> Path:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=16000)
        for k in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, k * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bad_videos")
    write_video(folder / "good.mp4", synthetic_frames(16, 40, 48, seed=1), fps=24)
    write_video(folder / "short.mp4", synthetic_frames(4, 40, 48, seed=2), fps=24)
    encode(folder / "one_pixel_wide.mp4", synthetic_frames(12, 40, 8, seed=3)[:, :, :1], "yuv444p")
    encode(folder / "odd_sized.mp4", synthetic_frames(12, 37, 53, seed=4), "yuv444p")
    encode(folder / "vfr.mp4", synthetic_frames(12, 40, 48, seed=5), pts_ms=VFR_PTS_MS)
    (folder / "empty.mp4").write_bytes(b"")
    whole = (folder / "good.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(whole[: len(whole) // 3])
    audio_only(folder / "audio_only.mp4")
    (folder / "text.mp4").write_text("this is not a video\n" * 50)
    for name, (frames, height, width) in READABLE.items():
        info = probe_video(folder / name)
        assert (info.num_frames, info.height, info.width) == (frames, height, width), name
    return folder


def test_training_loader_skips_counts_and_names_bad_files_and_reads_the_rest(videos):
    dataset = DatasetConfig(
        name="hdvila_video360",
        video_pattern=str(videos / "*.mp4"),
        num_video_frames=CLIP,
        crop_height=32,
        crop_width=32,
        val_fraction=0.0,
        write_manifest=False,
    )
    loader = build_dataloader(LoaderConfig(batch_size=1, num_workers=0, dataset=dataset), "train", seed=3)
    data = loader.dataset
    assert data.stats["unreadable"] == len(UNREADABLE) and data.stats["too_short"] == 1
    assert {p.name for p in data.unreadable} == set(UNREADABLE)
    for path, reason in data.unreadable.items():
        assert reason and UNREADABLE[path.name] in reason, (path, reason)
    assert [p.name for p in data.too_short] == ["short.mp4"]
    assert sorted(v.path.name for v in data.videos) == ["good.mp4", "odd_sized.mp4", "one_pixel_wide.mp4", "vfr.mp4"]
    seen = set()
    for batch in loader:
        clip = batch["video"]
        assert clip.shape == (1, 3, CLIP, 32, 32) and torch.isfinite(clip).all()
        assert clip.min() >= -1 and clip.max() <= 1
        seen.add(Path(batch["video_name"]["path"][0]).name)
    assert seen == {"good.mp4", "odd_sized.mp4", "one_pixel_wide.mp4", "vfr.mp4"}
    assert not data._bad, "no readable video may fail while its windows are decoded"


def test_index_names_every_unreadable_and_short_file(videos, tmp_path, capsys):
    assert main(["index", str(videos), "--num_video_frames", str(CLIP), "--output", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    assert f"9 files: 5 readable videos ({sum(r[0] for r in READABLE.values())} frames), 4 unreadable" in out
    for name in UNREADABLE:
        assert f"unreadable {videos / name}: " in out
    assert f"1 readable videos are shorter than {CLIP} frames" in out and f"short {videos / 'short.mp4'}" in out


def test_autoencode_reconstructs_every_readable_video_and_names_the_others(videos, tmp_path, capsys):
    checkpoint = tmp_path / "tiny.pt"
    torch.save({"model": training_state_dict(small_tokenizer("CV4x8x8-360p").state_dict())}, checkpoint)
    code = main(
        [
            "autoencode",
            "--video_pattern",
            str(videos / "*.mp4"),
            "--checkpoint",
            str(checkpoint),
            "--output_dir",
            str(tmp_path / "out"),
            "--temporal_window",
            "9",
            "--device",
            "cpu",
        ]
    )
    out = capsys.readouterr().out
    assert code == 1 and f"{len(READABLE)} done" in out and f"{len(UNREADABLE)} failed" in out, out
    for name in UNREADABLE:
        assert f"failed {videos / name}: " in out
    for name, (frames, height, width) in READABLE.items():
        info = probe_video(tmp_path / "out" / name)
        assert (info.num_frames, info.height, info.width) == (frames, height, width), name
