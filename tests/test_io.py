"""vtok.io: videos, images, file patterns, output paths and token files, on media made here with PyAV/Pillow."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from vtok.io import (
    MediaError,
    VideoWriter,
    expand_patterns,
    iter_frames,
    output_path,
    probe_video,
    read_image,
    read_video,
    resize_short_side,
    write_image,
    write_video,
)
from vtok.io.tokens import TokenMeta, is_complete, load_tokens, read_token_meta, save_tokens

# ----- media made in the tests


def moving_gradient(num_frames: int, height: int, width: int) -> np.ndarray:
    """Smooth, slowly moving colour gradients `[T,H,W,3]` uint8: what H.264 codes well."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    frames = []
    for t in range(num_frames):
        phase = 0.15 * t
        r = 128 + 90 * np.sin(2 * np.pi * x / (1.5 * width) + phase)
        g = 128 + 90 * np.cos(2 * np.pi * y / (1.5 * height) - phase)
        b = 128 + 60 * np.sin(2 * np.pi * (x + y) / (width + height) + 2 * phase)
        frames.append(np.stack([r, g, b], axis=-1))
    return np.rint(np.stack(frames)).astype(np.uint8)


def mean_abs_error(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a.astype(np.int32) - b.astype(np.int32)).mean())


def corner_frame(height: int = 32, width: int = 48) -> np.ndarray:
    """A dark, non-square frame with a bright top-left block, so every rotation or flip is told apart."""
    frame = np.full((height, width, 3), 40, np.uint8)
    frame[: height // 4, : width // 4] = 230
    return frame


def encode_with_pyav(
    path: Path,
    frames,
    *,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    frame_format: str = "rgb24",
    rate: int = 25,
    rotation: int | None = None,
    options: dict | None = None,
) -> Path:
    """A video written directly with PyAV (not through vtok), for inputs vtok's writer does not make."""
    with av.open(str(path), mode="w", options=options or {}) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for array in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format=frame_format)))
        container.mux(stream.encode(None))
    return path


def write_audio_only(path: Path, fmt: str, codec: str) -> Path:
    """A short silent mono audio file with no video stream."""
    with av.open(str(path), mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=16000)
        stream.layout = "mono"
        if codec == "pcm_s16le":
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.int16), format="s16", layout="mono")
        else:
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for _ in range(4):
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def assert_media_error(call, path: Path, reason: str | None = None) -> MediaError:
    with pytest.raises(MediaError) as info:
        call(path)
    err = info.value
    assert isinstance(err, ValueError)
    assert str(path) in str(err)
    assert err.path == Path(path)
    if reason is not None:
        assert reason in err.reason
    return err


def read_all(path: Path) -> list[np.ndarray]:
    return list(iter_frames(path))


def pix_fmt_of(path: Path) -> str:
    with av.open(str(path)) as container:
        return container.streams.video[0].codec_context.pix_fmt


# ----- videos: round trip


@pytest.mark.parametrize(
    "num_frames, fps",
    [
        (1, Fraction(30000, 1001)),
        (2, Fraction(25)),
        (17, Fraction(24)),
        (30, Fraction(30000, 1001)),
    ],
)
def test_video_round_trip(tmp_path: Path, num_frames: int, fps: Fraction) -> None:
    frames = moving_gradient(num_frames, 48, 64)
    path = write_video(tmp_path / "clip.mp4", frames, fps)
    assert path == tmp_path / "clip.mp4"

    info = probe_video(path)
    assert (info.width, info.height) == (64, 48)
    assert info.fps == fps and isinstance(info.fps, Fraction)
    assert info.num_frames == num_frames
    assert info.codec == "h264"
    assert info.rotation == 0
    assert pix_fmt_of(path) == "yuv420p"

    decoded, read_info = read_video(path)
    assert read_info == info
    assert decoded.dtype == np.uint8
    assert decoded.shape == (num_frames, 48, 64, 3)
    assert mean_abs_error(decoded, frames) < 3.0
    assert sorted(os.listdir(tmp_path)) == ["clip.mp4"]  # no temp file left


def test_fps_given_as_float_is_kept_as_its_fraction(tmp_path: Path) -> None:
    path = write_video(tmp_path / "f.mp4", moving_gradient(3, 32, 32), 29.97)
    assert probe_video(path).fps == Fraction(2997, 100)


def test_iter_frames_streams_the_same_frames_as_read_video(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", moving_gradient(9, 32, 48), 24)
    streamed = read_all(path)
    assert len(streamed) == 9
    assert all(f.shape == (32, 48, 3) and f.dtype == np.uint8 for f in streamed)
    np.testing.assert_array_equal(np.stack(streamed), read_video(path)[0])


def test_lower_crf_gives_smaller_error(tmp_path: Path) -> None:
    frames = moving_gradient(8, 48, 64)
    errors, sizes = {}, {}
    for crf in (10, 18, 35):
        path = write_video(tmp_path / f"crf{crf}.mp4", frames, 25, crf=crf)
        errors[crf] = mean_abs_error(read_video(path)[0], frames)
        sizes[crf] = path.stat().st_size
    assert errors[18] < 3.0
    assert errors[10] < errors[18] < errors[35]
    assert sizes[10] > sizes[35]


@pytest.mark.parametrize("height, width", [(35, 47), (36, 47), (35, 48)])
def test_odd_sizes_keep_their_exact_size(tmp_path: Path, height: int, width: int) -> None:
    frames = moving_gradient(3, height, width)
    path = write_video(tmp_path / "odd.mp4", frames, 25)
    assert pix_fmt_of(path) == "yuv444p"
    info = probe_video(path)
    assert (info.height, info.width) == (height, width)
    decoded, _ = read_video(path)
    assert decoded.shape == (3, height, width, 3)
    assert mean_abs_error(decoded, frames) < 3.0


# ----- videos: rotation, grayscale


@pytest.mark.parametrize("degrees, quarter_turns", [(90, 1), (-90, 3), (270, 3), (180, 2)])
def test_rotation_metadata_is_applied(tmp_path: Path, degrees: int, quarter_turns: int) -> None:
    """PyAV's `set_display_rotation` and `VideoFrame.rotation` are both counter-clockwise degrees, as is
    np.rot90 with k > 0; FFmpeg's own autorotate turns such a frame the same way."""
    original = corner_frame(32, 48)
    path = encode_with_pyav(tmp_path / "rot.mp4", [original] * 3, rotation=degrees)
    expected = np.rot90(original, k=quarter_turns)

    info = probe_video(path)
    assert (info.height, info.width) == expected.shape[:2]
    assert info.rotation % 360 == degrees % 360
    assert info.num_frames == 3

    frames = read_all(path)
    assert len(frames) == 3
    for frame in frames:
        assert frame.shape == expected.shape
        assert frame.flags.c_contiguous
        assert mean_abs_error(frame, expected) < 3.0
    # and not the other way round
    if quarter_turns != 2:
        assert mean_abs_error(frames[0], np.rot90(original, k=-quarter_turns)) > 20


def test_grayscale_video_reads_as_three_equal_channels(tmp_path: Path) -> None:
    gray = np.tile((np.arange(64) * 4).astype(np.uint8), (40, 1))
    frames = [gray, 255 - gray]
    path = encode_with_pyav(tmp_path / "gray.mkv", frames, codec="ffv1", pix_fmt="gray", frame_format="gray")
    assert pix_fmt_of(path) == "gray"
    decoded, info = read_video(path)
    assert (info.width, info.height, info.codec) == (64, 40, "ffv1")
    assert decoded.shape == (2, 40, 64, 3)
    for t in range(2):
        for channel in range(3):
            np.testing.assert_array_equal(decoded[t, ..., channel], frames[t])  # ffv1 is lossless


def test_gray_frames_in_h264_read_as_equal_channels(tmp_path: Path) -> None:
    gray = np.tile((np.arange(64) * 3).astype(np.uint8), (40, 1))
    path = encode_with_pyav(tmp_path / "gray.mp4", [gray] * 2, frame_format="gray")
    decoded, _ = read_video(path)
    assert decoded.shape == (2, 40, 64, 3)
    np.testing.assert_array_equal(decoded[..., 0], decoded[..., 1])
    np.testing.assert_array_equal(decoded[..., 0], decoded[..., 2])
    assert mean_abs_error(decoded[0, ..., 0], gray) < 2.0


# ----- videos: bad inputs

READERS = {"probe_video": probe_video, "read_video": read_video, "iter_frames": read_all}


@pytest.mark.parametrize("reader", READERS.values(), ids=READERS.keys())
def test_missing_empty_and_non_video_files(tmp_path: Path, reader) -> None:
    assert_media_error(reader, tmp_path / "missing.mp4", "no such file")
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert_media_error(reader, tmp_path / "empty.mp4", "empty")
    (tmp_path / "text.mp4").write_text("this is not a video\n" * 20)
    assert_media_error(reader, tmp_path / "text.mp4")
    (tmp_path / "folder.mp4").mkdir()
    assert_media_error(reader, tmp_path / "folder.mp4")


@pytest.mark.parametrize("reader", READERS.values(), ids=READERS.keys())
@pytest.mark.parametrize("name, fmt, codec", [("silence.wav", "wav", "pcm_s16le"), ("silence.m4a", "mp4", "aac")])
def test_audio_only_file_has_no_video_stream(tmp_path: Path, reader, name: str, fmt: str, codec: str) -> None:
    path = write_audio_only(tmp_path / name, fmt, codec)
    err = assert_media_error(reader, path, "no video stream")
    assert "audio" in err.reason


def test_truncated_mp4_with_index_at_the_end_is_a_media_error(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    full = write_video(tmp_path / "full.mp4", rng.integers(0, 256, (20, 64, 96, 3), dtype=np.uint8), 25)
    data = full.read_bytes()
    half = tmp_path / "half.mp4"
    half.write_bytes(data[: len(data) // 2])  # the moov atom (written last) is gone
    for reader in READERS.values():
        assert_media_error(reader, half)


def test_truncated_mp4_with_index_first_gives_fewer_frames_or_a_media_error(tmp_path: Path) -> None:
    """With the index at the front, the frames whose data survived decode. What the cut packet does depends on
    FFmpeg's decoder threading (the number of cores): it is skipped, or it ends decoding with a MediaError
    after the good frames. Nothing else may happen."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (20, 64, 96, 3), dtype=np.uint8)
    full = tmp_path / "full.mp4"
    with av.open(str(full), mode="w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=25, options={"threads": "1"})  # same bytes on any machine
        stream.height, stream.width, stream.pix_fmt = 64, 96, "yuv420p"
        for array in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode(None))
    data = full.read_bytes()
    half = tmp_path / "half.mp4"
    half.write_bytes(data[: len(data) // 2])

    assert probe_video(half).num_frames == 20  # the index still says 20 ...
    decoded = []
    try:
        for frame in iter_frames(half):
            decoded.append(frame)
    except MediaError as err:
        assert str(half) in str(err) and "decoding failed" in err.reason
        with pytest.raises(MediaError):
            read_video(half)
    else:
        np.testing.assert_array_equal(read_video(half)[0], np.stack(decoded))
    assert 0 < len(decoded) < 20  # ... but only the frames before the cut come out
    assert all(frame.shape == (64, 96, 3) for frame in decoded)


# ----- VideoWriter


def test_video_writer_file_appears_only_when_complete(tmp_path: Path) -> None:
    target = tmp_path / "out" / "clip.mp4"
    with VideoWriter(target, Fraction(30000, 1001)) as writer:
        writer.write(moving_gradient(2, 32, 32))
        writer.write(moving_gradient(1, 32, 32)[0])  # one [H,W,3] frame
        assert not target.exists()
        assert writer.frames_written == 3
    assert target.exists()
    assert sorted(os.listdir(target.parent)) == ["clip.mp4"]
    assert read_video(target)[0].shape == (3, 32, 32, 3)


def test_video_writer_replaces_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "clip.mp4"
    write_video(target, moving_gradient(2, 32, 32), 25)
    write_video(target, moving_gradient(5, 16, 16), 25)
    assert read_video(target)[0].shape == (5, 16, 16, 3)
    assert sorted(os.listdir(tmp_path)) == ["clip.mp4"]


def test_video_writer_exception_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "clip.mp4"
    with pytest.raises(RuntimeError, match="interrupted"):
        with VideoWriter(target, 25) as writer:
            writer.write(moving_gradient(4, 32, 32))
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((2, 16, 16, 3), np.float32),
        np.zeros((2, 16, 16, 3), np.int64),
        np.zeros((16, 16), np.uint8),
        np.zeros((2, 16, 16, 4), np.uint8),
        np.zeros((2, 16, 16, 1), np.uint8),
    ],
    ids=["float32", "int64", "2d", "rgba", "one-channel"],
)
def test_video_writer_rejects_wrong_dtype_and_shape(tmp_path: Path, bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="uint8 RGB"):
        with VideoWriter(tmp_path / "clip.mp4", 25) as writer:
            writer.write(bad)
    assert os.listdir(tmp_path) == []


def test_video_writer_rejects_a_size_change(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="differs"):
        with VideoWriter(tmp_path / "clip.mp4", 25) as writer:
            writer.write(moving_gradient(3, 32, 32))
            writer.write(moving_gradient(1, 32, 34))
    assert os.listdir(tmp_path) == []


def test_video_writer_without_frames_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no frames"):
        with VideoWriter(tmp_path / "a.mp4", 25):
            pass
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "b.mp4", np.zeros((0, 16, 16, 3), np.uint8), 25)
    assert os.listdir(tmp_path) == []


# ----- images


def test_write_image_png_round_trip_is_exact_and_atomic(tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    target = tmp_path / "sub" / "image.png"
    assert write_image(target, image) == target
    assert sorted(os.listdir(target.parent)) == ["image.png"]
    np.testing.assert_array_equal(read_image(target), image)
    write_image(target, image[::-1])  # overwrite, non-contiguous input
    np.testing.assert_array_equal(read_image(target), image[::-1])
    assert sorted(os.listdir(target.parent)) == ["image.png"]


def test_write_image_jpeg_follows_the_suffix(tmp_path: Path) -> None:
    image = moving_gradient(1, 40, 56)[0]
    path = write_image(tmp_path / "image.jpg", image)
    with Image.open(path) as opened:
        assert opened.format == "JPEG"
    assert mean_abs_error(read_image(path), image) < 3.0


@pytest.mark.parametrize(
    "bad",
    [np.zeros((8, 8, 3), np.float32), np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8)],
    ids=["float", "2d", "rgba"],
)
def test_write_image_rejects_wrong_input(tmp_path: Path, bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        write_image(tmp_path / "x.png", bad)
    assert not (tmp_path / "x.png").exists()


def test_rgba_png_reads_as_rgb(tmp_path: Path) -> None:
    rgba = np.random.default_rng(1).integers(0, 256, (20, 30, 4), dtype=np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    image = read_image(tmp_path / "rgba.png")
    assert image.shape == (20, 30, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, rgba[..., :3])


def test_grayscale_png_reads_as_three_channels(tmp_path: Path) -> None:
    gray = np.random.default_rng(2).integers(0, 256, (20, 30), dtype=np.uint8)
    Image.fromarray(gray, mode="L").save(tmp_path / "gray.png")
    image = read_image(tmp_path / "gray.png")
    assert image.shape == (20, 30, 3)
    for channel in range(3):
        np.testing.assert_array_equal(image[..., channel], gray)


def test_16_bit_grayscale_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    gray16 = (np.arange(48 * 64).reshape(48, 64) * 21).astype(np.uint16)
    Image.fromarray(gray16).save(tmp_path / "gray16.png")
    image = read_image(tmp_path / "gray16.png")
    assert image.shape == (48, 64, 3) and image.dtype == np.uint8
    expected = np.rint(gray16 / 257.0)
    for channel in range(3):
        assert np.abs(image[..., channel] - expected).max() <= 1


@pytest.mark.parametrize("suffix, tolerance", [(".png", 0.0), (".jpg", 8.0)])
def test_exif_orientation_is_applied(tmp_path: Path, suffix: str, tolerance: float) -> None:
    original = corner_frame(20, 30)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    Image.fromarray(original).save(tmp_path / f"oriented{suffix}", exif=exif)
    image = read_image(tmp_path / f"oriented{suffix}")
    expected = np.rot90(original, k=-1)  # clockwise
    assert image.shape == (30, 20, 3)
    assert mean_abs_error(image, expected) <= tolerance
    assert mean_abs_error(image, np.rot90(original, k=1)) > 20


def test_bad_images_are_media_errors(tmp_path: Path) -> None:
    assert_media_error(read_image, tmp_path / "missing.png", "no such file")
    (tmp_path / "empty.png").write_bytes(b"")
    assert_media_error(read_image, tmp_path / "empty.png")
    (tmp_path / "text.png").write_text("not an image")
    assert_media_error(read_image, tmp_path / "text.png")
    write_image(tmp_path / "full.png", np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "half.png").write_bytes(data[: len(data) // 2])
    assert_media_error(read_image, tmp_path / "half.png")
    (tmp_path / "folder.png").mkdir()
    assert_media_error(read_image, tmp_path / "folder.png")


# ----- resize_short_side


def nvidia_size(height: int, width: int, short_size: int) -> tuple[int, int]:
    """NVIDIA's `resize_video` size rule, restated."""
    if height <= width:
        long_side = int(width * short_size / height + 0.5)
        return short_size, long_side + long_side % 2
    long_side = int(height * short_size / width + 0.5)
    return long_side + long_side % 2, short_size


@pytest.mark.parametrize(
    "height, width, short_size, expected",
    [
        (480, 640, 256, (256, 342)),  # 341.33 -> 341 -> 342
        (640, 480, 256, (342, 256)),  # portrait
        (720, 1280, 360, (360, 640)),
        (1280, 720, 360, (640, 360)),
        (100, 100, 50, (50, 50)),
        (99, 151, 64, (64, 98)),  # 97.6 -> 98
        (48, 64, 96, (96, 128)),  # upscaling
        (360, 481, 360, (360, 482)),  # short side already right, odd long side: still made even
        (481, 360, 360, (482, 360)),
    ],
)
def test_resize_short_side_sizes(height: int, width: int, short_size: int, expected: tuple[int, int]) -> None:
    assert nvidia_size(height, width, short_size) == expected
    frame = moving_gradient(1, height, width)[0]
    resized = resize_short_side(frame, short_size)
    assert resized.shape == (*expected, 3) and resized.dtype == np.uint8
    lanczos = Image.fromarray(frame).resize(expected[::-1], resample=Image.Resampling.LANCZOS)
    np.testing.assert_array_equal(resized, np.asarray(lanczos))


def test_resize_short_side_returns_the_same_array_when_already_that_size() -> None:
    frame = moving_gradient(1, 256, 342)[0]
    assert resize_short_side(frame, 256) is frame
    portrait = moving_gradient(1, 342, 256)[0]
    assert resize_short_side(portrait, 256) is portrait


# ----- expand_patterns


def make_files(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")


def test_expand_patterns_sorted_and_deduplicated(tmp_path: Path) -> None:
    root = tmp_path.resolve()
    make_files(root, "b.mp4", "a.mp4", "c.mov", "notes.txt")
    found = expand_patterns([str(root / "*.mp4"), str(root / "a.*"), str(root / "*.mov"), str(root / "a.mp4")])
    assert found == [root / "a.mp4", root / "b.mp4", root / "c.mov"]
    assert expand_patterns(str(root / "b.mp4")) == [root / "b.mp4"]  # one string, not a sequence of chars


def test_expand_patterns_relative_patterns_resolve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path.resolve()
    make_files(root, "x/a.mp4")
    monkeypatch.chdir(root / "x")
    assert expand_patterns(["a.mp4", "./*.mp4", str(root / "x" / "a.mp4")]) == [root / "x" / "a.mp4"]


def test_expand_patterns_recursive(tmp_path: Path) -> None:
    root = tmp_path.resolve()
    make_files(root, "top.mp4", "one/a.mp4", "one/two/b.mp4", "one/two/c.png")
    assert expand_patterns(str(root / "**" / "*.mp4")) == [
        root / "one" / "a.mp4",
        root / "one" / "two" / "b.mp4",
        root / "top.mp4",
    ]
    assert expand_patterns(str(root / "*" / "*.mp4")) == [root / "one" / "a.mp4"]


def test_expand_patterns_directory_with_suffix_filter(tmp_path: Path) -> None:
    root = tmp_path.resolve()
    make_files(root, "vids/a.mp4", "vids/B.MOV", "vids/c.txt", "vids/sub/d.mp4")
    assert expand_patterns(str(root / "vids"), (".mp4", ".mov")) == [root / "vids" / "B.MOV", root / "vids" / "a.mp4"]
    assert expand_patterns(str(root / "vids")) == [
        root / "vids" / "B.MOV",
        root / "vids" / "a.mp4",
        root / "vids" / "c.txt",
    ]
    with pytest.raises(ValueError, match="vids"):
        expand_patterns(str(root / "vids"), (".png",))


def test_expand_patterns_expands_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path.resolve()
    make_files(root, "vids/a.mp4")
    monkeypatch.setenv("HOME", str(root))
    assert expand_patterns("~/vids/*.mp4") == [root / "vids" / "a.mp4"]
    assert expand_patterns("~/vids", (".mp4",)) == [root / "vids" / "a.mp4"]


def test_expand_patterns_nothing_matches_names_the_pattern(tmp_path: Path) -> None:
    make_files(tmp_path, "a.mp4")
    pattern = str(tmp_path / "*.mkv")
    with pytest.raises(ValueError) as info:
        expand_patterns([str(tmp_path / "*.mp4"), pattern])
    assert repr(pattern) in str(info.value)
    with pytest.raises(ValueError, match="nothing_here"):
        expand_patterns(str(tmp_path / "nothing_here"))
    (tmp_path / "only_dirs" / "x.mp4").mkdir(parents=True)  # a folder named like a file is not a match
    with pytest.raises(ValueError):
        expand_patterns(str(tmp_path / "only_dirs" / "*.mp4"))


# ----- output_path


def test_output_path_default_folder_beside_the_source(tmp_path: Path) -> None:
    source = tmp_path / "data" / "clip.mp4"
    assert output_path(source, [source], None, ".mp4") == tmp_path / "data" / "reconstructions" / "clip.mp4"
    assert (
        output_path(source, [source], None, ".mp4", tag="_input")
        == tmp_path / "data" / "reconstructions" / "clip_input.mp4"
    )
    assert (
        output_path(source, [source], None, ".safetensors", default_folder="tokens")
        == tmp_path / "data" / "tokens" / "clip.safetensors"
    )
    dotted = tmp_path / "data" / "my.clip.v2.mov"
    assert output_path(dotted, [dotted], None, ".mp4") == tmp_path / "data" / "reconstructions" / "my.clip.v2.mp4"


def test_output_path_mirrors_sub_folders_under_output_dir(tmp_path: Path) -> None:
    sources = [tmp_path / "in" / "a" / "clip.mp4", tmp_path / "in" / "b" / "clip.mp4", tmp_path / "in" / "top.mov"]
    out = tmp_path / "out"
    targets = [output_path(s, sources, out, ".safetensors", tag="_tok") for s in sources]
    assert targets == [
        out / "a" / "clip_tok.safetensors",
        out / "b" / "clip_tok.safetensors",
        out / "top_tok.safetensors",
    ]
    assert len(set(targets)) == len(targets)
    # a single source lands directly in output_dir
    assert output_path(sources[0], sources[:1], out, ".mp4") == out / "clip.mp4"
    # sources sharing only a deep parent keep just the part below it
    deep = [tmp_path / "in" / "a" / "x" / "v.mp4", tmp_path / "in" / "a" / "y" / "v.mp4"]
    assert [output_path(s, deep, out, ".mp4") for s in deep] == [out / "x" / "v.mp4", out / "y" / "v.mp4"]


# ----- token files


def full_meta(kind: str) -> TokenMeta:
    return TokenMeta(
        model="Cosmos-0.1-Tokenizer-DV4x8x8" if kind == "discrete" else "Cosmos-0.1-Tokenizer-CV4x8x8",
        overrides={"channels": 16, "name": "x"},
        kind=kind,
        media="video",
        fps="30000/1001",
        num_frames=17,
        height=60,
        width=90,
        padding=(1, 3, 2, 4),
        source="/data/in/clip.mp4",
        source_height=120,
        source_width=180,
        temporal_window=17,
        temporal_overlap=4,
        checkpoint=["encoder.jit", "decoder.jit"],
    )


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_tokens_round_trip(tmp_path: Path, kind: str) -> None:
    if kind == "discrete":
        tokens = torch.randint(0, 64000, (3, 8, 12), dtype=torch.int32)
    else:
        tokens = torch.randn(16, 3, 8, 12).to(torch.bfloat16)
    meta = full_meta(kind)
    target = tmp_path / "tok" / "clip.safetensors"
    assert save_tokens(target, tokens[..., :11], meta) == target  # a non-contiguous view
    assert sorted(os.listdir(target.parent)) == ["clip.safetensors"]

    loaded, loaded_meta = load_tokens(target)
    assert loaded.dtype == tokens.dtype
    assert torch.equal(loaded, tokens[..., :11])
    assert loaded_meta == meta
    assert loaded_meta.padding == (1, 3, 2, 4) and isinstance(loaded_meta.padding, tuple)
    assert loaded_meta.tensor_name == ("indices" if kind == "discrete" else "latent")
    assert read_token_meta(target) == meta
    assert is_complete(target)


def test_save_tokens_overwrites_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "clip.safetensors"
    save_tokens(target, torch.zeros(2, 3, 4, dtype=torch.int32), full_meta("discrete"))
    save_tokens(target, torch.ones(1, 3, 4, dtype=torch.int32), full_meta("discrete"))
    assert os.listdir(tmp_path) == ["clip.safetensors"]
    assert torch.equal(load_tokens(target)[0], torch.ones(1, 3, 4, dtype=torch.int32))


def not_token_files(tmp_path: Path) -> dict[str, Path]:
    good = save_tokens(
        tmp_path / "good.safetensors", torch.randn(16, 2, 8, 8).to(torch.bfloat16), full_meta("continuous")
    )
    data = good.read_bytes()
    files = {"missing": tmp_path / "missing.safetensors"}
    files["truncated"] = tmp_path / "truncated.safetensors"
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["empty"] = tmp_path / "empty.safetensors"
    files["empty"].write_bytes(b"")
    files["text"] = tmp_path / "text.safetensors"
    files["text"].write_text("hello")
    files["plain"] = tmp_path / "plain.safetensors"
    save_file({"latent": torch.zeros(2, 2)}, str(files["plain"]))
    files["other_format"] = tmp_path / "other_format.safetensors"
    save_file(
        {"latent": torch.zeros(2, 2)},
        str(files["other_format"]),
        metadata={"vtok": json.dumps({"format": "vtok.tokens/999"})},
    )
    files["incomplete_meta"] = tmp_path / "incomplete_meta.safetensors"
    save_file(
        {"latent": torch.zeros(2, 2)},
        str(files["incomplete_meta"]),
        metadata={"vtok": json.dumps({"format": "vtok.tokens/1", "model": "x"})},
    )
    files["not_json"] = tmp_path / "not_json.safetensors"
    save_file({"latent": torch.zeros(2, 2)}, str(files["not_json"]), metadata={"vtok": "{not json"})
    files["json_list"] = tmp_path / "json_list.safetensors"
    save_file({"latent": torch.zeros(2, 2)}, str(files["json_list"]), metadata={"vtok": "[1, 2]"})
    return files


def test_is_complete_and_read_token_meta_on_files_that_are_not_token_files(tmp_path: Path) -> None:
    assert is_complete(tmp_path / "good.safetensors") is False  # not there yet
    files = not_token_files(tmp_path)
    assert is_complete(tmp_path / "good.safetensors") is True
    for name, path in files.items():
        assert is_complete(path) is False, name
        with pytest.raises(ValueError) as info:
            read_token_meta(path)
        assert str(path) in str(info.value), name
        with pytest.raises(ValueError):
            load_tokens(path)
    with pytest.raises(ValueError, match="vtok.tokens/999"):
        read_token_meta(files["other_format"])


def test_load_tokens_without_the_named_tensor(tmp_path: Path) -> None:
    path = tmp_path / "odd.safetensors"
    save_file({"something": torch.zeros(2)}, str(path), metadata={"vtok": json.dumps(asdict(full_meta("discrete")))})
    assert is_complete(path)  # the metadata is fine ...
    with pytest.raises(ValueError, match="indices"):  # ... the tensor is not
        load_tokens(path)
