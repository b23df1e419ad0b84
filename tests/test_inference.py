"""The inference pipeline: windows without seams, tiles without edges, padding, jit vs torch, images."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import small_tokenizer, synthetic_frames

import vtok
from vtok.inference import Pipeline, TemporalWindows, Tiling, TokenizerEngine, load_engine
from vtok.inference.pipeline import to_model_input
from vtok.inference.tiles import run_tiled, tile_starts
from vtok.inference.windows import stream_windows


def engine_for(tok: vtok.Tokenizer) -> TokenizerEngine:
    encode = (lambda x: tok.encode(x)[0]) if tok.config.is_discrete else tok.encode
    decode = tok.decode_indices if tok.config.is_discrete else tok.decode
    return TokenizerEngine(tok.name, tok.config, torch.device("cpu"), torch.float32, "torch", encode, decode)


def whole_clip(tok: vtok.Tokenizer, frames: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """Tokens and reconstruction of the whole clip in one call (end-padded to a valid length)."""
    pipeline = Pipeline(
        engine_for(tok),
        temporal_window=1 + tok.config.time_factor * math.ceil((len(frames) - 1) / tok.config.time_factor)
        if len(frames) > 1
        else 1 + tok.config.time_factor,
    )
    tokens, layout, count = pipeline.encode(frames)
    return tokens, np.stack(list(pipeline.decode(tokens, layout, count)))


# ----- window arithmetic, checked with a context-free "model" for which windowing must change nothing

TC = 4


def toy_encode(x: torch.Tensor) -> torch.Tensor:
    """Frame 0 alone, then the mean of each group of TC frames: a tokenizer without temporal context."""
    groups = [x[:, :, :1]] + [
        x[:, :, 1 + j * TC : 1 + (j + 1) * TC].mean(2, keepdim=True) for j in range((x.shape[2] - 1) // TC)
    ]
    return torch.cat(groups, 2)


def toy_decode(z: torch.Tensor) -> torch.Tensor:
    return torch.cat([z[:, :, :1]] + [z[:, :, j : j + 1].expand(-1, -1, TC, -1, -1) for j in range(1, z.shape[2])], 2)


def pad_time(x: torch.Tensor) -> torch.Tensor:
    extra = -(x.shape[2] - 1) % TC
    return torch.cat([x, x[:, :, -1:].expand(-1, -1, extra, -1, -1)], 2)


@pytest.mark.parametrize("frames", [1, 2, 5, 17, 18, 30, 61])
@pytest.mark.parametrize("window,overlap,chunk", [(17, 8, 3), (17, 0, 5), (9, 4, 1), (25, 12, 8)])
def test_windows_reproduce_a_context_free_model_exactly(frames, window, overlap, chunk):
    x = torch.arange(frames, dtype=torch.float32).view(1, 1, frames, 1, 1)
    plan = TemporalWindows.resolve(TC, window, overlap)
    latents = torch.cat(
        list(stream_windows(x.split(chunk, 2), lambda v: toy_encode(pad_time(v)), plan.encode_plan(), 2, 2)), 2
    )
    expected = toy_encode(pad_time(x))
    assert torch.equal(latents, expected)
    decoded = torch.cat(list(stream_windows(latents.split(chunk, 2), toy_decode, plan.decode_plan(), 2, 2)), 2)
    assert torch.allclose(decoded, toy_decode(expected))


def test_window_settings_are_validated_with_useful_messages():
    with pytest.raises(ValueError, match=r"1 \+ a multiple of 8 .* got 16"):
        TemporalWindows.resolve(8, 16)
    with pytest.raises(ValueError, match="multiple of 8 between 0 and 8"):
        TemporalWindows.resolve(8, 17, 4)
    with pytest.raises(ValueError, match="between 0 and 8"):
        TemporalWindows.resolve(8, 17, 16)
    assert TemporalWindows.resolve(8).frames == 49 and TemporalWindows.resolve(8).overlap == 16
    assert TemporalWindows.resolve(8, 17).overlap == 8  # default overlap capped to what the window allows


# ----- a real (small, random) causal model


@pytest.fixture(scope="module")
def cv() -> vtok.Tokenizer:
    torch.manual_seed(0)
    return small_tokenizer("CV4x8x8-360p")


@pytest.fixture(scope="module")
def dv() -> vtok.Tokenizer:
    torch.manual_seed(0)
    return small_tokenizer("DV4x8x8-360p")


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return synthetic_frames(41, 30, 44)  # sizes that are not multiples of the spatial compression


def test_odd_sizes_are_padded_and_cropped_back(cv):
    frames = synthetic_frames(11, 30, 45)
    out = np.stack(list(Pipeline(engine_for(cv), temporal_window=9).autoencode(frames)))
    assert out.shape == frames.shape and out.dtype == np.uint8


def test_first_window_matches_the_whole_clip_and_short_videos_are_whole(cv, dv, clip):
    """The model is causal: the first window's tokens and frames are those of a whole-clip pass."""
    for tok in (cv, dv):
        whole_tokens, whole_frames = whole_clip(tok, clip)
        pipeline = Pipeline(engine_for(tok), temporal_window=17, temporal_overlap=8)
        tokens, layout, count = pipeline.encode(clip)
        assert count == len(clip) and tokens.shape == whole_tokens.shape
        first = 1 + 16 // 4  # latents of the first 17-frame window
        axis = 0 if tok.config.is_discrete else 1
        if tok.config.is_discrete:
            assert torch.equal(tokens[:first], whole_tokens[:first])
        else:
            torch.testing.assert_close(
                tokens.narrow(axis, 0, first), whole_tokens.narrow(axis, 0, first), rtol=1e-4, atol=1e-4
            )
        frames = np.stack(list(pipeline.decode(tokens, layout, count)))
        untouched = 8  # frames before the second window's cross-fade starts
        assert np.abs(frames[:untouched].astype(int) - whole_frames[:untouched]).max() <= 1
        short = Pipeline(engine_for(tok), temporal_window=49)
        short_tokens, _, _ = short.encode(clip)
        assert short_tokens.shape == whole_tokens.shape
        assert (
            torch.equal(short_tokens, whole_tokens)
            if tok.config.is_discrete
            else torch.allclose(short_tokens, whole_tokens, atol=1e-4)
        )


def _seam(frames: np.ndarray, reference: np.ndarray) -> float:
    """Largest frame-to-frame jump of the deviation from a whole-clip reconstruction (averaged over frame
    pairs first, since the 2x temporal upsampling makes even and odd frames differ by design)."""
    deviation = np.abs(frames.astype(np.float64) - reference).mean(axis=(1, 2, 3))
    return float(np.abs(np.diff((deviation[1:] + deviation[:-1]) / 2)).max())


@pytest.mark.parametrize("window,overlap", [(17, 8), (25, 16)])
def test_overlapping_windows_leave_no_seam_where_restarting_windows_do(cv, clip, window, overlap):
    _, whole = whole_clip(cv, clip)
    restart = Pipeline(engine_for(cv), temporal_window=window, temporal_overlap=0)
    overlapping = Pipeline(engine_for(cv), temporal_window=window, temporal_overlap=overlap)
    seam_restart = _seam(np.stack(list(restart.autoencode(clip))), whole)
    seam_overlap = _seam(np.stack(list(overlapping.autoencode(clip))), whole)
    assert seam_overlap < 0.5 * seam_restart, (seam_overlap, seam_restart)


def test_encode_then_decode_is_autoencode(cv, dv, clip):
    for tok in (cv, dv):
        pipeline = Pipeline(engine_for(tok), temporal_window=17, temporal_overlap=4)
        tokens, layout, count = pipeline.encode(clip)
        assert np.array_equal(
            np.stack(list(pipeline.decode(tokens, layout, count))), np.stack(list(pipeline.autoencode(clip)))
        )


def test_discrete_tokens_are_int32_indices_in_the_codebook(dv, clip):
    tokens, layout, count = Pipeline(engine_for(dv), temporal_window=17).encode(clip)
    assert tokens.dtype == torch.int32
    assert tokens.shape == (1 + (len(clip) - 1) // 4, 32 // 8, 48 // 8)
    assert 0 <= int(tokens.min()) and int(tokens.max()) < dv.codebook_size


# ----- tiles


def test_tile_starts_cover_the_frame_with_the_overlap():
    assert tile_starts(64, 64, 16) == [0]
    assert tile_starts(100, 40, 8) == [0, 32, 60]
    starts = tile_starts(200, 48, 16)
    assert starts[0] == 0 and starts[-1] == 200 - 48
    assert all(b - a <= 48 - 16 for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize("blend", ["fade", "nearest"])
def test_tiling_a_local_operation_changes_nothing(blend):
    """For an operation without spatial context (8x8 pooling and its inverse), tiles must be invisible."""
    x = torch.randn(1, 3, 5, 48, 80)
    encode = lambda v: F.avg_pool3d(v, (1, 8, 8))  # noqa: E731
    decode = lambda z: z.repeat_interleave(8, -1).repeat_interleave(8, -2)  # noqa: E731
    tiling = Tiling.resolve(8, (32, 40), 16)
    encoded = run_tiled(encode, x, tiling, 1 / 8, blend)
    torch.testing.assert_close(encoded, encode(x))
    torch.testing.assert_close(run_tiled(decode, encoded, tiling.scaled(8, divide=True), 8, "fade"), decode(encode(x)))


def test_overlapping_tiles_are_closer_to_whole_frames_than_plain_tiles(cv):
    """Tiles cannot be exact (the mid-block attention sees the whole frame), but blending overlaps helps."""
    frames = synthetic_frames(9, 64, 96)

    def autoencode(**tiles) -> np.ndarray:
        pipeline = Pipeline(engine_for(cv), temporal_window=9, **tiles)
        return np.stack(list(pipeline.autoencode(frames))).astype(np.float64)

    whole = autoencode()
    psnr = {}
    for overlap in (0, 16):
        tiled = autoencode(tile=(48, 48), tile_overlap=overlap)
        assert tiled.shape == whole.shape
        psnr[overlap] = 10 * np.log10(255**2 / np.mean((tiled - whole) ** 2))
    assert psnr[16] > psnr[0] + 2, psnr
    with pytest.raises(ValueError, match="multiples of 8"):
        Tiling.resolve(8, (36, 48), None)


# ----- engines: TorchScript files vs vtok's network, the full autoencoder.jit alone


@pytest.fixture(scope="module")
def exported(cv, tmp_path_factory):
    folder = tmp_path_factory.mktemp("jit")
    vtok.export_jit(cv, folder, example_shape=(1, 3, 5, 32, 32), dtype=torch.float32)
    return folder


def test_jit_mode_and_torch_mode_agree(exported, clip):
    frames = clip[:21]
    results = {}
    for mode in ("torch", "jit"):
        engine = load_engine(
            checkpoint_enc=exported / "encoder.jit",
            checkpoint_dec=exported / "decoder.jit",
            mode=mode,
            device="cpu",
            dtype=torch.float32,
        )
        assert engine.name == "CV4x8x8-360p"
        pipeline = Pipeline(engine, temporal_window=17, processing="windows")  # the same windows in both modes
        results[mode] = np.stack(list(pipeline.autoencode(frames))).astype(int)
    assert np.abs(results["jit"] - results["torch"]).max() <= 1


def test_full_autoencoder_jit_runs_alone_in_windows(exported, clip):
    engine = load_engine(exported / "autoencoder.jit", mode="jit", device="cpu", dtype=torch.float32)
    assert not engine.can_encode and engine.autoencode_fn is not None
    pair = load_engine(
        checkpoint_enc=exported / "encoder.jit",
        checkpoint_dec=exported / "decoder.jit",
        mode="jit",
        device="cpu",
        dtype=torch.float32,
    )
    alone = np.stack(list(Pipeline(engine, temporal_window=49).autoencode(clip[:17]))).astype(int)
    split = np.stack(list(Pipeline(pair, temporal_window=49).autoencode(clip[:17]))).astype(int)
    assert np.abs(alone - split).max() <= 1
    windowed = np.stack(list(Pipeline(engine, temporal_window=17).autoencode(clip)))
    assert windowed.shape == clip.shape


def test_engine_rejects_bad_arguments(exported, tmp_path):
    with pytest.raises(ValueError, match="no checkpoint given"):
        load_engine()
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        load_engine(tmp_path / "missing.jit")
    with pytest.raises(ValueError, match="either --checkpoint or"):
        load_engine(exported / "autoencoder.jit", checkpoint_enc=exported / "encoder.jit")
    with pytest.raises(ValueError, match="does not fit"):
        load_engine(exported / "autoencoder.jit", tokenizer_type="CV8x8x8-720p")


# ----- images


def test_images_through_video_and_image_models():
    image = synthetic_frames(1, 37, 50)[0]
    ci = small_tokenizer("CI8x8-360p")
    pipeline = Pipeline(engine_for(ci))
    out = pipeline.autoencode_image(image)
    assert out.shape == image.shape and out.dtype == np.uint8
    tokens, layout = pipeline.encode_image(image)
    assert tokens.shape == (ci.config.latent_dim, 40 // 8, 56 // 8)
    assert np.array_equal(pipeline.decode_image(tokens, layout), out)
    cv = small_tokenizer("CV4x8x8-360p")
    as_video = Pipeline(engine_for(cv))
    expected = np.stack(list(as_video.autoencode(image[None])))[0]
    assert np.array_equal(as_video.autoencode_image(image), expected)
    with pytest.raises(ValueError, match="image tokenizer"):
        pipeline.encode(image[None])


def test_model_input_is_nvidias_normalization():
    frames = np.array([0, 128, 255], dtype=np.uint8).reshape(1, 1, 3, 1).repeat(3, -1)
    x = to_model_input(frames)
    assert x.shape == (1, 3, 1, 1, 3)
    torch.testing.assert_close(x[0, 0, 0, 0], torch.tensor([-1.0, 128 / 255 * 2 - 1, 1.0]))


def test_auto_dtype_is_bf16_where_it_is_native():
    from vtok.devices import cpu_has_native_bf16, resolve_dtype

    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("auto", torch.device("cpu")) == (torch.bfloat16 if cpu_has_native_bf16() else torch.float32)
    assert resolve_dtype("float32", torch.device("cuda")) == torch.float32
