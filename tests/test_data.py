"""vtok.data: names and crop tables, manifests, seek-decoded windows, augmentations, splits, samplers, loaders.

Everything runs on small mp4s made here (vtok.io.write_video, or PyAV for short GOPs), plus a corrupt, a
truncated, an empty and a too-short file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from conftest import synthetic_frames

from vtok.cli import index as index_cmd
from vtok.data import (
    AugmentConfig,
    DatasetConfig,
    LoaderConfig,
    MockVideoDataset,
    VideoWindowDataset,
    build_dataloader,
    build_dataset,
    dataset_names,
    find_videos,
    get_crop_size_info,
    index_videos,
    parse_dataset_name,
    probe_record,
    read_window,
    set_epoch,
    split_videos,
)
from vtok.data.augment import plan_crop
from vtok.data.decode import frame_to_rgb
from vtok.data.loader import collate
from vtok.data.manifest import MANIFEST_NAME
from vtok.data.sources import (
    VIDEO_RES_SIZE_INFO,
    VIDEO_VAL_CROP_SIZE_INFO,
    aspect_bucket,
    crop_size,
    is_mock,
    resize_size,
    video_patterns,
)
from vtok.io import iter_frames, write_video

FRAMES = 9  # window length used by most tests


def short_gop_video(path: Path, frames: np.ndarray, gop: int = 8, fps: int = 25, rotation: int | None = None) -> Path:
    """An H.264 mp4 with a keyframe every `gop` frames and B-frames, so windows are reached by seeking."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"g": str(gop), "keyint_min": str(gop), "crf": "28", "preset": "ultrafast", "bf": "2"}
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for array in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A folder of good videos (16:9 and 4:3) and one of bad ones (corrupt, truncated, empty, too short)."""
    root = tmp_path_factory.mktemp("data")
    good, bad = root / "good", root / "bad"
    good.mkdir()
    bad.mkdir()
    for i in range(4):
        write_video(good / f"clip{i}.mp4", synthetic_frames(30 + 4 * i, 54, 96, seed=i), fps=25)
    write_video(good / "square.mp4", synthetic_frames(24, 48, 64, seed=9), fps=30)
    seek = short_gop_video(root / "gop8.mp4", synthetic_frames(48, 48, 64, seed=5))
    rotated = short_gop_video(root / "rotated.mp4", synthetic_frames(6, 48, 64, seed=6), rotation=90)
    write_video(root / "tv43.mp4", synthetic_frames(10, 256, 320, seed=7), fps=25)  # 4:3 at the 256 table's size
    (bad / "corrupt.mp4").write_bytes(os.urandom(3000))
    (bad / "empty.mp4").write_bytes(b"")
    full = (good / "clip0.mp4").read_bytes()
    (bad / "truncated.mp4").write_bytes(full[: len(full) // 2])
    write_video(bad / "short.mp4", synthetic_frames(4, 54, 96), fps=25)
    return {"good": good, "bad": bad, "seek": seek, "rotated": rotated, "tv43": root / "tv43.mp4", "root": root}


def copy_folder(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(MANIFEST_NAME))
    return dst


def config(pattern: str | list[str], **kw) -> DatasetConfig:
    kw.setdefault("num_video_frames", FRAMES)
    kw.setdefault("crop_height", 32)
    kw.setdefault("val_fraction", 0.0)
    return DatasetConfig(name=kw.pop("name", "hdvila_video256"), video_pattern=pattern, **kw)


# ----- names, tables, buckets


def test_dataset_names_map_to_sources_and_resolutions() -> None:
    names = dataset_names()
    assert len(names) == 10 and "hdvila_video720" in names and "mock_video360" in names
    assert parse_dataset_name("hdvila_video360").resolution == "360"
    assert video_patterns(DatasetConfig(name="hdvila_video720")) == ["datasets/hdvila/videos/*.mp4"]
    assert video_patterns(DatasetConfig(name="hdvila_video720", video_pattern="my/*.mp4")) == ["my/*.mp4"]
    assert video_patterns(DatasetConfig(video_pattern=["a/*.mp4", "b"])) == ["a/*.mp4", "b"]
    assert is_mock(DatasetConfig(name="mock_video720")) and not is_mock(DatasetConfig(name="hdvila_video720"))
    assert not is_mock(DatasetConfig(name="mock_video720", video_pattern="my/*.mp4"))
    for bad in ("hdvila_video999", "youtube_video720", "hdvila720"):
        with pytest.raises(ValueError, match="unknown dataset"):
            parse_dataset_name(bad)


def test_crop_and_resize_tables() -> None:
    assert get_crop_size_info(256) == {
        "1,1": (256, 256),
        "4,3": (256, 192),
        "3,4": (192, 256),
        "16,9": (256, 144),
        "9,16": (144, 256),
    }
    assert get_crop_size_info(720)["16,9"] == (720, 400)  # 405 rounded down to 16
    assert VIDEO_RES_SIZE_INFO["360"]["16,9"] == (544, 320) and VIDEO_RES_SIZE_INFO["720"]["4,3"] == (960, 720)
    assert VIDEO_RES_SIZE_INFO["1080"]["16,9"] == (1920, 1072) and "1,1" not in VIDEO_RES_SIZE_INFO["1080"]
    assert resize_size("1080", "1,1") in VIDEO_RES_SIZE_INFO["1080"].values()  # nearest bucket the table has
    assert crop_size(DatasetConfig(crop_height=256), "720", "16,9") == (256, 144)  # crop_height is the long side
    assert crop_size(DatasetConfig(crop_height=144, crop_width=256), "720", "9,16") == (256, 144)  # explicit
    assert crop_size(DatasetConfig(crop_height=None), "720", "16,9") == VIDEO_VAL_CROP_SIZE_INFO["720"]["16,9"]
    with pytest.raises(ValueError, match="multiple of 8"):
        DatasetConfig(crop_height=100, crop_width=250).validate()


def test_aspect_buckets() -> None:
    assert aspect_bucket(1280, 720) == "16,9" and aspect_bucket(1920, 1080) == "16,9"
    assert aspect_bucket(640, 480) == "4,3" and aspect_bucket(480, 640) == "3,4"
    assert aspect_bucket(720, 1280) == "9,16" and aspect_bucket(500, 500) == "1,1"
    assert aspect_bucket(1440, 1080) == "4,3" and aspect_bucket(854, 480) == "16,9"


def test_plan_follows_spec_resize_and_crops() -> None:
    rng = np.random.default_rng(0)
    cfg = DatasetConfig(crop_height=256, augment=AugmentConfig(raw_crop_prob=0.0))
    plan = plan_crop(1080, 1920, cfg, "720", True, rng)  # 1080p resized to the 720 table, cropped to 256x144
    assert plan.resized == (720, 1280) and (plan.width, plan.height) == (256, 144)
    assert 0 <= plan.top <= 720 - 144 and 0 <= plan.left <= 1280 - 256
    assert plan_crop(720, 1280, cfg, "720", True, rng).resized is None  # already the table size
    assert plan_crop(480, 640, cfg, "720", True, rng).resized == (720, 960)  # upscaled to cover 960x720
    val = plan_crop(1080, 1920, cfg, "720", False, rng)  # center crop, nothing random
    assert (val.top, val.left, val.reverse, val.flip) == (288, 512, False, False)
    raw = plan_crop(
        1080, 1920, DatasetConfig(crop_height=256, augment=AugmentConfig(raw_crop_prob=1.0)), "720", True, rng
    )
    assert raw.resized is None and raw.top <= 1080 - 144  # cropped at the source resolution


# ----- manifest and `vtok index`


def test_manifest_written_reused_and_invalidated(media, tmp_path: Path) -> None:
    folder = copy_folder(media["good"], tmp_path / "videos")
    paths = find_videos(folder)
    first = index_videos(paths, progress=False)
    assert (first.probed, first.reused) == (5, 0) and first.written == [folder / MANIFEST_NAME]
    data = json.loads((folder / MANIFEST_NAME).read_text())
    assert sorted(data["videos"]) == [p.name for p in paths]
    assert data["videos"]["clip1.mp4"]["num_frames"] == 34 and data["videos"]["square.mp4"]["fps"] == "30/1"

    second = index_videos(paths, progress=False)  # nothing changed: nothing probed, nothing written
    assert (second.probed, second.reused, second.written) == (0, 5, [])
    assert second.records == first.records

    write_video(folder / "clip2.mp4", synthetic_frames(12, 54, 96, seed=3), fps=25)  # a file changes
    (folder / "clip3.mp4").unlink()  # and one goes away
    third = index_videos(find_videos(folder), progress=False)
    assert (third.probed, third.reused) == (1, 3)
    data = json.loads((folder / MANIFEST_NAME).read_text())
    assert data["videos"]["clip2.mp4"]["num_frames"] == 12 and "clip3.mp4" not in data["videos"]


def test_probe_counts_frames_and_reports_bad_files(media) -> None:
    assert probe_record(media["good"] / "clip1.mp4").num_frames == 34
    record = probe_record(media["seek"])
    assert record.num_frames == 48 and [k[0] for k in record.keyframes] == [0, 8, 16, 24, 32, 40]
    for name in ("corrupt.mp4", "empty.mp4", "truncated.mp4"):
        record = probe_record(media["bad"] / name)
        assert not record.readable and record.reason, name


def test_index_command(media, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = copy_folder(media["bad"], tmp_path / "mixed")
    shutil.copy(media["good"] / "clip0.mp4", folder)
    parser = argparse.ArgumentParser()
    index_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["index", str(folder), "--workers", "2", "--num_video_frames", "9"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "5 files: 2 readable videos (34 frames), 3 unreadable; 5 probed" in out
    assert "1 readable videos are shorter than 9 frames" in out and "corrupt.mp4" in out
    assert (folder / MANIFEST_NAME).exists()
    args = parser.parse_args(["index", str(folder / "*.mp4"), "--output", str(tmp_path / "all.json")])
    assert args.func(args) == 0
    assert "0 probed" not in capsys.readouterr().out  # a new manifest file: probed again
    assert len(json.loads((tmp_path / "all.json").read_text())["videos"]) == 5


# ----- decoding


def test_seek_decoded_windows_equal_iter_frames(media) -> None:
    path = media["seek"]
    reference = list(iter_frames(path))
    keyframes = probe_record(path).keyframes
    for ids, decoded_from in ((range(0, 9), 0), (range(19, 28), 16), (range(9, 40, 3), 8), (range(40, 48), 40)):
        window = read_window(path, ids, keyframes)
        assert window.decoded_from == decoded_from  # started at the keyframe before the window, not at 0
        assert len(window.frames) == len(ids)
        for frame, i in zip(window.frames, ids):
            np.testing.assert_array_equal(frame, reference[i])
    no_index = read_window(path, range(30, 35))  # without keyframes: decoded from the start, same frames
    assert no_index.decoded_from == 0 and all((f == reference[i]).all() for f, i in zip(no_index.frames, range(30, 35)))
    with pytest.raises(ValueError, match="ended after 48 frames"):
        read_window(path, range(44, 52), keyframes)


def test_region_conversion_equals_converting_everything(media) -> None:
    for path in (media["seek"], media["rotated"]):
        reference = list(iter_frames(path))
        height, width = reference[0].shape[:2]
        for region in ((0, 0, 16, 32), (3, 5, 17, 31), (height - 13, width - 21, 13, 21), (0, 0, height, width)):
            top, left, h, w = region
            window = read_window(path, range(2, 6), convert=lambda f, region=region: frame_to_rgb(f, region))
            for frame, i in zip(window.frames, range(2, 6)):
                np.testing.assert_array_equal(frame, reference[i][top : top + h, left : left + w])
    assert reference[0].shape[:2] == (64, 48)  # the rotated video is displayed upright


# ----- samples and augmentations


def test_sample_shape_range_dtype_and_fields(media) -> None:
    ds = VideoWindowDataset(config(str(media["good"]), frame_stride=2), "train", seed=3)
    assert ds.stats["videos"] == 5 and ds.start_interval == ds.span // 2 == 8
    for index in (0, len(ds) - 1):
        sample = ds[index]
        video = sample["video"]
        assert video.dtype == torch.float32 and video.shape[:2] == (3, FRAMES) and video.is_contiguous()
        assert video.shape[2:] in ((16, 32), (16, 32), (32, 32), (16, 16))  # 16:9 -> 32x16 crop of long side 32
        assert -1.0 <= float(video.min()) and float(video.max()) <= 1.0 and float(video.std()) > 0.05
        assert sample["video_name"]["path"].endswith(".mp4") and sample["video_name"]["start"] >= 0
    assert ds[0]["fps"] == 12.5  # 25 fps source, every second frame


def test_augmentations_are_seeded_and_do_what_they_say(media) -> None:
    base = dict(crop_height=32, crop_width=32)
    plain = VideoWindowDataset(config(str(media["good"]), **base, augment=AugmentConfig(0.0, 0.0, True, 0.0)))
    both = VideoWindowDataset(config(str(media["good"]), **base, augment=AugmentConfig(0.0, 1.0, True, 1.0)))
    disabled = VideoWindowDataset(config(str(media["good"]), **base, augment=AugmentConfig(0.0, 0.0, False, 1.0)))
    a, b, c = plain.sample(5, epoch=1), both.sample(5, epoch=1), disabled.sample(5, epoch=1)
    assert a["video_name"] == b["video_name"]  # same draws, so the same window and crop
    torch.testing.assert_close(b["video"], a["video"].flip(1).flip(3), rtol=0, atol=0)  # reversed and flipped
    torch.testing.assert_close(c["video"], a["video"], rtol=0, atol=0)  # flip_enabled=False wins over prob=1
    assert not torch.equal(a["video"], a["video"].flip(3))

    again = plain.sample(5, epoch=1)
    torch.testing.assert_close(again["video"], a["video"], rtol=0, atol=0)  # same (seed, epoch, index)
    other_epochs = [plain.sample(5, epoch=e) for e in range(2, 6)]
    assert any(not torch.equal(s["video"], a["video"]) for s in other_epochs)  # new window/crop per epoch

    val = VideoWindowDataset(config(str(media["good"]), **base), "val")
    first, second = val[3], val[3]
    torch.testing.assert_close(first["video"], second["video"], rtol=0, atol=0)
    assert first["video_name"]["path"].endswith("clip0.mp4")  # 96x54: resized to cover 320x192 (the 256 table)
    window = np.stack(list(iter_frames(first["video_name"]["path"])))[first["video_name"]["start"] :][:FRAMES]
    resized = (
        torch.nn.functional.interpolate(
            torch.from_numpy(window).permute(0, 3, 1, 2).float(), size=(192, 341), mode="bicubic", antialias=True
        )
        .clamp(0, 255)
        .round()
    )
    expected = resized[:, :, 80:112, 154:186].permute(1, 0, 2, 3) / 127.5 - 1  # the center crop
    torch.testing.assert_close(first["video"], expected, rtol=0, atol=1e-6)


def test_val_sample_without_resize_is_the_exact_center_crop(media) -> None:
    ds = VideoWindowDataset(config(str(media["tv43"])), "val")  # 320x256 is the 4:3 size of the 256 table
    sample = ds[0]
    assert sample["aspect_ratio"] == "4,3" and sample["video"].shape == (3, FRAMES, 16, 32)  # 4:3 crop, long side 32
    frames = np.stack(list(iter_frames(media["tv43"])))[:FRAMES, 120:136, 144:176]
    expected = torch.from_numpy(frames).permute(3, 0, 1, 2).float().div(255).sub(0.5).div(0.5)
    torch.testing.assert_close(sample["video"], expected, rtol=0, atol=0)


# ----- splits and sampling


def test_split_is_disjoint_by_video(media) -> None:
    names = [Path(f"v{i:03d}.mp4") for i in range(200)]
    parts = split_videos(names, 0.1)
    assert not set(parts["train"]) & set(parts["val"]) and len(parts["train"]) + len(parts["val"]) == 200
    assert 8 <= len(parts["val"]) <= 35
    assert split_videos(names[:150], 0.1)["val"] == [p for p in parts["val"] if p in names[:150]]  # stable
    assert split_videos(names[:2], 0.1)["val"] and split_videos(names[:2], 0.1)["train"]  # one each at least
    assert split_videos(names, 0.0) == {"train": names, "val": names}

    train = VideoWindowDataset(config(str(media["good"]), val_fraction=0.3), "train")
    val = VideoWindowDataset(config(str(media["good"]), val_fraction=0.3), "val")
    train_videos = {v.path for v in train.videos}
    val_videos = {v.path for v in val.videos}
    assert train_videos and val_videos and not train_videos & val_videos
    assert len(train_videos | val_videos) == 5
    assert {val[i]["video_name"]["path"] for i in (0, len(val) - 1)} <= {str(p) for p in val_videos}


def test_distributed_sampler_splits_the_windows_between_ranks(media) -> None:
    cfg = LoaderConfig(num_workers=0, dataset=config(str(media["good"])))
    train = [build_dataloader(cfg, "train", rank=r, world_size=2, seed=1) for r in range(2)]
    total = len(train[0].dataset)
    shares = [[index for _, index in loader.sampler] for loader in train]
    assert not set(shares[0]) & set(shares[1])  # each rank its own windows
    assert len(shares[0]) == len(shares[1]) == total // 2  # together all of them (drop_last evens them out)
    assert shares[0] != sorted(shares[0])  # shuffled
    set_epoch(train[0], 1)
    assert [index for _, index in train[0].sampler] != shares[0]  # a new order each epoch
    assert {epoch for epoch, _ in train[0].sampler} == {1}  # the epoch travels with the index to the workers
    first = [next(iter(loader))["video_name"] for loader in train]
    assert first[0] != first[1]

    val = [build_dataloader(cfg, "val", rank=r, world_size=2) for r in range(2)]
    shares = [[index for _, index in loader.sampler] for loader in val]
    assert set(shares[0]) | set(shares[1]) == set(range(len(val[0].dataset)))  # every window, in order
    assert shares[0] == sorted(shares[0])


# ----- bad files


def test_bad_files_are_skipped_and_counted(media, tmp_path: Path) -> None:
    folder = copy_folder(media["bad"], tmp_path / "mixed")
    shutil.copy(media["good"] / "clip1.mp4", folder)
    ds = VideoWindowDataset(config(str(folder)))
    assert ds.stats["videos"] == 1 and ds.stats["unreadable"] == 3 and ds.stats["too_short"] == 1
    assert {p.name for p in ds.unreadable} == {"corrupt.mp4", "empty.mp4", "truncated.mp4"}
    assert ds[0]["video"].shape[1] == FRAMES


def test_all_bad_files_fail_fast_with_counts(media, tmp_path: Path) -> None:
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"no readable videos with >= 9 frames .*: 3 unreadable, 1 too short"):
        VideoWindowDataset(config(str(copy_folder(media["bad"], tmp_path / "bad"))))
    assert time.perf_counter() - start < 10
    with pytest.raises(ValueError, match="no files match"):
        VideoWindowDataset(config(str(tmp_path / "nothing" / "*.mp4")))
    with pytest.raises(ValueError, match="val split .* is empty"):
        VideoWindowDataset(config(str(media["tv43"]), val_fraction=0.1), "val")


def test_read_time_failures_are_replaced_then_raise(media, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = copy_folder(media["good"], tmp_path / "videos")
    ds = VideoWindowDataset(config(str(folder), write_manifest=False))
    broken = ds.videos[0].path
    broken.write_bytes(os.urandom(broken.stat().st_size))  # goes bad after indexing
    with caplog.at_level(logging.WARNING, logger="vtok.data.video_dataset"):
        first, second = ds[0], ds[1]
    assert first["video_name"]["path"] != str(broken) and second["video_name"]["path"] != str(broken)
    assert sum(str(broken) in r.getMessage() for r in caplog.records) == 1  # logged once
    torch.testing.assert_close(ds[0]["video"], first["video"], rtol=0, atol=0)  # the same replacement again
    for video in ds.videos:
        video.path.write_bytes(b"")
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match="every one of the 5 videos"):
        ds[2]
    assert time.perf_counter() - start < 10


# ----- mock data and loaders


def test_mock_source(tmp_path: Path) -> None:
    ds = build_dataset(DatasetConfig(name="mock_video720", crop_height=256, num_video_frames=5), "train", seed=0)
    assert isinstance(ds, MockVideoDataset) and len(ds) == 32768
    video = ds[7]["video"]
    assert video.shape == (3, 5, 144, 256) and video.dtype == torch.float32  # NVIDIA's mock clips: the 16:9 crop
    assert -1 <= float(video.min()) < -0.9 and 0.9 < float(video.max()) <= 1
    torch.testing.assert_close(ds[7]["video"], video, rtol=0, atol=0)
    assert not torch.equal(ds[8]["video"], video)
    val = MockVideoDataset(DatasetConfig(name="mock_video720", crop_height=None, num_video_frames=2), "val")
    assert val[0]["video"].shape == (3, 2, 704, 1264)  # the validation table when crop_height is None
    shapes = MockVideoDataset(
        DatasetConfig(name="mock_video360", crop_height=64, num_video_frames=6, mock_content="shapes")
    )
    clip = shapes[0]["video"]
    assert clip.shape == (3, 6, 32, 64) and not torch.equal(clip[:, 0], clip[:, -1])  # things move
    torch.testing.assert_close(shapes[0]["video"], clip, rtol=0, atol=0)


def test_collate_explains_mixed_sizes() -> None:
    samples = [{"video": torch.zeros(3, 2, 16, 32)}, {"video": torch.zeros(3, 2, 32, 32)}]
    with pytest.raises(ValueError, match="explicit crop"):
        collate(samples)


def test_dataloader_with_two_workers_matches_no_workers(media) -> None:
    dataset = config(str(media["good"]), crop_height=32, crop_width=32)
    batches = {}
    for workers in (0, 2):
        loader = build_dataloader(LoaderConfig(batch_size=2, num_workers=workers, dataset=dataset), "train", seed=4)
        assert loader.persistent_workers == (workers > 0)
        assert loader.pin_memory == torch.cuda.is_available()
        set_epoch(loader, 2)
        batches[workers] = [batch for _, batch in zip(range(3), loader)]
    for with_workers, without in zip(batches[2], batches[0]):
        assert with_workers["video"].shape == (2, 3, FRAMES, 32, 32)
        assert with_workers["video_name"]["path"] == without["video_name"]["path"]
        torch.testing.assert_close(with_workers["video"], without["video"], rtol=0, atol=0)


def test_generated_videos_with_a_slow_pan_up_keep_their_size() -> None:
    """A pan that moves up or left slower than a pixel per frame once rounded to one row before the texture."""
    from vtok.data.synthetic import textured_video

    video = textured_video(19, 96, 128, np.random.default_rng([1000, 5]))  # vy ~ -0.2: the rounding case
    assert video.shape == (19, 96, 128, 3) and video.std() > 0
