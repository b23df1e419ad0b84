"""Exact streaming: chunked encode/decode equals one pass, memory is bounded, the horizon is reported.

Small random models (16 channels, one ResNet block per level) on 16x32 frames. Chunk plans are written in
units of the temporal compression tc: [0, 1, 2] means chunks of 1, tc and 2*tc frames.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SMALL_VIDEO_CHANNELS, VIDEO_MODELS, reference_params

import vtok
from vtok.inference.nvidia_windows import (
    crop_window,
    nvidia_autoencode,
    nvidia_decode,
    nvidia_encode,
    nvidia_windows,
    pad_window,
)
from vtok.networks.memory_format import set_memory_format
from vtok.networks.video_streams import (
    AttentionHorizonWarning,
    attention_cache_bytes_per_latent_frame,
    horizon_for_budget,
)

HEIGHT, WIDTH = 16, 32
FP32_TOLERANCE = 1e-4  # of the output range
# bf16, measured (3 seeds, 4 models, 64x96): stream vs one bf16 pass <= 0.0044 of the range when encoding
# and <= 0.011 when decoding, below bf16's own error vs fp32 (~0.008 when encoding): one bf16 rounding
# of a later chunk's attention output differs and propagates. Indices: 0 of 1800 differed.
BF16_TOLERANCE = {"encode": 0.02, "decode": 0.04}
BF16_INDEX_MISMATCH = 0.05


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: on a busy 2-core machine, two OpenMP threads waiting on each other made
    this file ~50x slower than one thread (measured: 5.5 s vs 0.11 s of CPU for one 65-frame stream)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small(name: str, seed: int = 0, **overrides) -> vtok.Tokenizer:
    torch.manual_seed(seed)
    return vtok.build_tokenizer(name, channels=SMALL_VIDEO_CHANNELS, num_res_blocks=1, **overrides).eval()


def video(tok: vtok.Tokenizer, latents: int, seed: int = 1, height: int = HEIGHT, width: int = WIDTH) -> torch.Tensor:
    tc = tok.compression[0]
    return (
        torch.rand(1, 3, 1 + (latents - 1) * tc, height, width, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    )


def pieces(x: torch.Tensor, sizes: list[int], dim: int = 2) -> list[torch.Tensor]:
    assert sum(sizes) == x.shape[dim]
    return list(x.split(sizes, dim=dim))


def frame_plan(plan: list[int], tc: int) -> list[int]:
    return [1 + plan[0] * tc] + [k * tc for k in plan[1:]]


def stream_encode(tok: vtok.Tokenizer, x: torch.Tensor, plan: list[int], **kwargs):
    """Concatenated stream outputs: the latent, or (indices, codes)."""
    with tok.stream_encoder(**kwargs) as enc:
        outs = [enc(c) for c in pieces(x, frame_plan(plan, tok.compression[0]))]
    if tok.config.is_discrete:
        return torch.cat([o[0] for o in outs], 1), torch.cat([o[1] for o in outs], 2)
    return torch.cat(outs, 2)


def stream_decode(tok: vtok.Tokenizer, z: torch.Tensor, plan: list[int], **kwargs) -> torch.Tensor:
    with tok.stream_decoder(**kwargs) as dec:
        return torch.cat([dec(c) for c in pieces(z, plan)], 2)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    expected = expected.float()
    return ((actual.float() - expected).abs().max() / (expected.max() - expected.min())).item()


def assert_same_encoding(tok, streamed, expected, tolerance: float = FP32_TOLERANCE) -> None:
    if tok.config.is_discrete:
        assert torch.equal(streamed[0], expected[0]), f"{int((streamed[0] != expected[0]).sum())} indices differ"
        assert torch.equal(streamed[1], expected[1])
    else:
        assert streamed.shape == expected.shape
        assert relative_error(streamed, expected) <= tolerance


def codes_of(tok, encoded) -> torch.Tensor:
    return encoded[1] if tok.config.is_discrete else encoded


ENCODER_PLANS = [[0, 1, 1, 1, 1], [1, 3], [2, 1, 1]]
DECODER_PLANS = [[1, 1, 1, 1, 1], [2, 3], [1, 4], [4, 1]]


@pytest.mark.parametrize("name", VIDEO_MODELS)
@torch.no_grad()
def test_streamed_encoding_equals_one_pass(name: str) -> None:
    tok = small(name)
    x = video(tok, latents=5)
    expected = tok.encode(x)
    for plan in ENCODER_PLANS:
        assert_same_encoding(tok, stream_encode(tok, x, plan), expected)
    shorter = video(tok, latents=3, seed=2)  # another length, first chunk of 1 + 2*tc
    assert_same_encoding(tok, stream_encode(tok, shorter, [2]), tok.encode(shorter))


@pytest.mark.parametrize("name", VIDEO_MODELS)
@torch.no_grad()
def test_streamed_decoding_equals_one_pass(name: str) -> None:
    tok = small(name)
    z = codes_of(tok, tok.encode(video(tok, latents=5)))
    expected = tok.decode(z)
    for plan in DECODER_PLANS:
        streamed = stream_decode(tok, z, plan)
        assert streamed.shape == expected.shape
        assert relative_error(streamed, expected) <= FP32_TOLERANCE, plan
    if tok.config.is_discrete:
        indices = tok.encode(video(tok, latents=5))[0]
        with tok.stream_decoder() as dec:
            frames = torch.cat([dec.decode_indices(c) for c in pieces(indices, [2, 3], dim=1)], 2)
        assert relative_error(frames, tok.decode_indices(indices)) <= FP32_TOLERANCE


@pytest.mark.parametrize("name", ["CV4x8x8-360p", "DV8x16x16-720p"])
@torch.no_grad()
def test_one_chunk_is_the_single_pass_bit_for_bit(name: str) -> None:
    """With nothing carried the stream runs the very same kernels on the same tensors."""
    tok = small(name)
    x = video(tok, latents=3)
    encoded = tok.encode(x)
    with tok.stream_encoder() as enc:
        streamed = enc(x)
    z = codes_of(tok, encoded)
    if tok.config.is_discrete:
        assert torch.equal(streamed[0], encoded[0]) and torch.equal(streamed[1], encoded[1])
    else:
        assert torch.equal(streamed, encoded)
    with tok.stream_decoder() as dec:
        assert torch.equal(dec(z), tok.decode(z))


@pytest.mark.parametrize("name", VIDEO_MODELS)
@torch.no_grad()
def test_channels_last_weights_stream_exactly(name: str) -> None:
    """load_tokenizer's CPU default layout: the stream follows it and still matches (both layouts)."""
    plain = small(name)
    x = video(plain, latents=4)
    expected = plain.encode(x)
    tok = set_memory_format(small(name), torch.channels_last_3d)
    assert tok.memory_format == torch.channels_last_3d
    streamed = stream_encode(tok, x, [0, 2, 1])
    assert_same_encoding(tok, streamed, tok.encode(x))
    assert_same_encoding(tok, streamed, expected)
    z = codes_of(tok, expected)
    assert relative_error(stream_decode(tok, z, [1, 2, 1]), plain.decode(z)) <= FP32_TOLERANCE


@pytest.mark.parametrize("name", VIDEO_MODELS)
@torch.no_grad()
def test_bf16_streams_within_measured_tolerance(name: str) -> None:
    tok = small(name).to(torch.bfloat16)
    x = video(tok, latents=5)
    expected = tok.encode(x)
    streamed = stream_encode(tok, x, [0, 1, 2, 1])
    if tok.config.is_discrete:
        assert (streamed[0] != expected[0]).float().mean().item() <= BF16_INDEX_MISMATCH
        assert streamed[1].dtype == torch.bfloat16
    else:
        assert streamed.dtype == torch.bfloat16
        assert relative_error(streamed, expected) <= BF16_TOLERANCE["encode"]
    z = codes_of(tok, expected)
    decoded = stream_decode(tok, z, [1, 2, 2])
    assert decoded.dtype == torch.bfloat16
    assert relative_error(decoded, tok.decode(z)) <= BF16_TOLERANCE["decode"]


@torch.no_grad()
def test_attention_inside_levels_streams_exactly() -> None:
    """A config with temporal attention before the temporal downsampling (2 frames per latent frame)."""
    tok = small("CV4x8x8-360p", attn_resolutions=(512,))
    assert len(tok.encoder.down[0].attn) == 1 and len(tok.decoder.up[0].attn) == 2
    x = video(tok, latents=4, width=16)
    expected = tok.encode(x)
    assert_same_encoding(tok, stream_encode(tok, x, [0, 1, 2]), expected)
    assert relative_error(stream_decode(tok, expected, [1, 2, 1]), tok.decode(expected)) <= FP32_TOLERANCE
    per_frame = attention_cache_bytes_per_latent_frame(tok, HEIGHT, 16)
    with tok.stream_encoder() as enc:
        enc(x[:, :, :1])
        before = enc.memory().attention
        enc(x[:, :, 1:5])
        assert enc.memory().attention - before == per_frame["encoder"]
    # The horizon counts latent frames at every rate: the first two are exact, the window is plan-independent.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AttentionHorizonWarning)
        windowed = [stream_encode(tok, x, plan, attention_horizon=2) for plan in ([0, 1, 2], [0, 1, 1, 1])]
    assert relative_error(windowed[0][:, :, :2], expected[:, :, :2]) <= FP32_TOLERANCE
    assert (windowed[0][:, :, 2:] - expected[:, :, 2:]).abs().max() > 1e-4
    assert relative_error(windowed[0], windowed[1]) <= FP32_TOLERANCE


@pytest.mark.parametrize("name", ["CV4x8x8-360p", "DV8x16x16-720p"])
@torch.no_grad()
def test_batch_of_two_videos_streams_exactly(name: str) -> None:
    tok = small(name)
    x = torch.cat([video(tok, latents=4, seed=5), video(tok, latents=4, seed=6)])
    expected = tok.encode(x)
    assert_same_encoding(tok, stream_encode(tok, x, [0, 1, 2]), expected)
    z = codes_of(tok, expected)
    assert relative_error(stream_decode(tok, z, [2, 1, 1]), tok.decode(z)) <= FP32_TOLERANCE


@torch.no_grad()
def test_two_streams_at_once_do_not_interfere_and_leave_nothing_behind() -> None:
    tok = small("DV4x8x8-360p")
    keys = list(tok.state_dict())
    attributes = {name: sorted(vars(m)) for name, m in tok.named_modules()}
    a, b = video(tok, latents=4, seed=3), video(tok, latents=4, seed=4)
    tc = tok.compression[0]
    outs_a, outs_b = [], []
    with tok.stream_encoder() as enc_a, tok.stream_encoder() as enc_b:
        for ca, cb in zip(pieces(a, frame_plan([0, 1, 2], tc)), pieces(b, frame_plan([0, 1, 2], tc))):
            outs_a.append(enc_a(ca)[0])
            outs_b.append(enc_b(cb)[0])
    assert torch.equal(torch.cat(outs_a, 1), tok.encode(a)[0])
    assert torch.equal(torch.cat(outs_b, 1), tok.encode(b)[0])
    assert enc_a.closed and enc_a.memory().total == 0
    assert list(tok.state_dict()) == keys
    assert {name: sorted(vars(m)) for name, m in tok.named_modules()} == attributes
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in tok.modules())


@pytest.mark.parametrize("name", ["CV8x8x8-720p", "DV4x8x8-360p"])
@torch.no_grad()
def test_conv_state_is_constant_and_attention_cache_grows_linearly(name: str) -> None:
    tok = small(name)
    tc = tok.compression[0]
    per_frame = attention_cache_bytes_per_latent_frame(tok, HEIGHT, WIDTH)["encoder"]
    assert (
        per_frame == 2 * SMALL_VIDEO_CHANNELS * 4 * (HEIGHT // tok.compression[1]) * (WIDTH // tok.compression[1]) * 4
    )
    per_frame_decoded = attention_cache_bytes_per_latent_frame(tok, HEIGHT, WIDTH)["decoder"]
    conv_bytes: dict[str, set[int]] = {"encoder": set(), "decoder": set()}
    for latents in (4, 9):
        x = video(tok, latents=latents)
        with tok.stream_encoder(attention_horizon=None) as enc, tok.stream_decoder(attention_horizon=None) as dec:
            for i, chunk in enumerate(pieces(x, frame_plan([0] + [1] * (latents - 1), tc))):
                dec(codes_of(tok, enc(chunk)))
                for part, stream, size in (("encoder", enc, per_frame), ("decoder", dec, per_frame_decoded)):
                    memory = stream.memory()
                    conv_bytes[part].add(memory.conv)
                    assert memory.attention == size * (i + 1)
    for sizes in conv_bytes.values():  # one value: the same after every chunk, for both lengths
        assert len(sizes) == 1 and sizes.pop() > 0


@pytest.mark.parametrize("part", ["encoder", "decoder"])
@torch.no_grad()
def test_attention_cache_stops_growing_at_the_horizon(part: str) -> None:
    tok = small("CV8x8x8-720p")
    tc = tok.compression[0]
    horizon, latents = 3, 8
    per_frame = attention_cache_bytes_per_latent_frame(tok, HEIGHT, WIDTH)[part]
    x = video(tok, latents=latents)
    stream = (
        tok.stream_encoder(attention_horizon=horizon)
        if part == "encoder"
        else tok.stream_decoder(attention_horizon=horizon)
    )
    chunks = (
        pieces(x, frame_plan([0] + [1] * (latents - 1), tc))
        if part == "encoder"
        else pieces(tok.encode(x), [1] * latents)
    )
    with warnings.catch_warnings(), stream:
        warnings.simplefilter("ignore", AttentionHorizonWarning)
        sizes = []
        for chunk in chunks:
            stream(chunk)
            sizes.append(stream.memory().attention)
    assert sizes == [per_frame * min(i + 1, horizon - 1) for i in range(latents)]  # what later queries see


@torch.no_grad()
def test_horizon_exact_within_and_reported_beyond() -> None:
    tok = small("CV8x8x8-720p")
    x = video(tok, latents=6)
    expected = tok.encode(x)
    with tok.stream_encoder(attention_horizon=6) as enc:  # the whole video fits: exact, nothing said
        with warnings.catch_warnings():
            warnings.simplefilter("error", AttentionHorizonWarning)
            exact = torch.cat([enc(c) for c in pieces(x, frame_plan([0, 2, 3], 8))], 2)
        assert enc.exact and enc.inexact_from is None
    assert relative_error(exact, expected) <= FP32_TOLERANCE

    outputs = []
    for plan in ([0, 1, 1, 1, 1, 1], [2, 3]):
        with tok.stream_encoder(attention_horizon=3) as enc:
            with pytest.warns(AttentionHorizonWarning, match="from 3 on") as caught:
                outputs.append(torch.cat([enc(c) for c in pieces(x, frame_plan(plan, 8))], 2))
            assert len(caught) == 1  # said once
            assert not enc.exact and enc.inexact_from == 3
    for windowed in outputs:  # latent frames before the horizon are exact, later ones are not
        assert relative_error(windowed[:, :, :3], expected[:, :, :3]) <= FP32_TOLERANCE
        assert (windowed[:, :, 3:] - expected[:, :, 3:]).abs().max() > 1e-3
    # A sliding window of 3 latent frames, the same whatever the chunks.
    assert relative_error(outputs[0], outputs[1]) <= FP32_TOLERANCE


@torch.no_grad()
def test_decoder_horizon_reported_beyond() -> None:
    tok = small("DV8x16x16-720p")
    indices = torch.randint(
        0, tok.codebook_size, (1, 5, HEIGHT // 16, WIDTH // 16), generator=torch.Generator().manual_seed(0)
    )
    codes = tok.indices_to_codes(indices)  # random tokens: encoded random noise barely changes over time
    expected = tok.decode(codes)
    with tok.stream_decoder(attention_horizon=2) as dec, pytest.warns(AttentionHorizonWarning):
        frames = torch.cat([dec(c) for c in pieces(codes, [1, 1, 3])], 2)
    assert not dec.exact and dec.inexact_from == 2
    assert relative_error(frames[:, :, :9], expected[:, :, :9]) <= FP32_TOLERANCE  # latent frames 0 and 1
    assert (frames[:, :, 9:] - expected[:, :, 9:]).abs().max() > 1e-3


def test_default_horizon_follows_the_budget() -> None:
    with torch.device("meta"):
        tok = vtok.build_tokenizer("CV8x8x8-720p")
    per_frame = attention_cache_bytes_per_latent_frame(tok, 720, 1280)
    assert per_frame == {"encoder": 2 * 512 * 90 * 160 * 4, "decoder": 2 * 512 * 90 * 160 * 4}
    assert (
        attention_cache_bytes_per_latent_frame(tok, 720, 1280, dtype=torch.bfloat16)["encoder"]
        == per_frame["encoder"] // 2
    )
    assert horizon_for_budget(per_frame["encoder"], 4 * 2**30) == 72
    assert horizon_for_budget(0, 4 * 2**30) is None
    small_tok = small("CV8x8x8-720p")
    x = video(small_tok, latents=3)
    budget = 2 * attention_cache_bytes_per_latent_frame(small_tok, HEIGHT, WIDTH)["encoder"] + 1
    with small_tok.stream_encoder(attention_budget=budget) as enc:
        assert enc.attention_horizon is None  # resolved at the first chunk
        enc(x[:, :, :1])
        assert enc.attention_horizon == 2


@torch.no_grad()
def test_stream_errors_are_clear() -> None:
    tok = small("CV4x8x8-360p")
    x = video(tok, latents=3)
    with tok.stream_encoder() as enc:
        with pytest.raises(ValueError, match=r"first chunk has 1 \+ k\*4 frames \(1, 5, 9"):
            enc(x[:, :, :4])
        enc(x[:, :, :5])
        with pytest.raises(ValueError, match=r"after the first have k\*4 frames \(4, 8, 12"):
            enc(x[:, :, 5:8])
        with pytest.raises(ValueError, match="same batch and frame size"):
            enc(x[:, :, 5:9, :8])
        with pytest.raises(ValueError, match="multiples of 8"):
            enc(x[:, :, 5:9, :, :12])
    with pytest.raises(ValueError, match="stream is closed"):
        enc(x[:, :, 5:9])
    dec = tok.stream_decoder()
    dec.close()
    with pytest.raises(ValueError, match="stream is closed"):
        dec(torch.zeros(1, 16, 1, 4, 6))
    with tok.stream_decoder() as dec, pytest.raises(ValueError, match=r"\[B,16,t,h,w\]"):
        dec(torch.zeros(1, 6, 1, 4, 6))
    with pytest.raises(ValueError, match="no token indices"), tok.stream_decoder() as dec:
        dec.decode_indices(torch.zeros(1, 1, 4, 6, dtype=torch.int64))
    for bad in (0, -1, 2.5, "all", True):
        with pytest.raises(ValueError, match="attention_horizon"):
            tok.stream_encoder(attention_horizon=bad)
    with pytest.raises(ValueError, match="image tokenizer"):
        vtok.build_tokenizer("CI8x8-360p", channels=32).stream_encoder()
    discrete = small("DV4x8x8-360p")
    with discrete.stream_decoder() as dec, pytest.raises(ValueError, match=r"must lie in \[0, 64000\)"):
        dec.decode_indices(torch.full((1, 1, 4, 6), 64000))


# -- golden data: the stream against NVIDIA's reference outputs --------------------------------------------


def _parity_cases() -> list:
    return [
        p
        for p in reference_params("parity", "*.safetensors")
        if p.values[0] is None or Path(p.values[0]).name[1] == "V"
    ]


@pytest.mark.parametrize("video_parity_file", _parity_cases())
@torch.no_grad()
def test_stream_matches_reference_outputs(video_parity_file: Path) -> None:
    from test_parity import RECON, TIGHT, load_case

    case = load_case(video_parity_file)
    tok = case.tok
    tc = tok.compression[0]
    x = case["input"]  # 9 frames: tc=4 models stream 5 + 4 frames, tc=8 models 1 + 8
    streamed = stream_encode(tok, x, [0, 2] if tc == 4 else [0, 1])
    if case.discrete:
        assert torch.equal(streamed[0], case["indices"]) and torch.equal(streamed[1], case["codes"])
        z = case["codes"]
    else:
        torch.testing.assert_close(streamed, case["latent"], **TIGHT)
        z = case["latent"]
    torch.testing.assert_close(stream_decode(tok, z, [1] * z.shape[2]), case["reconstruction"], **RECON)


# -- NVIDIA's windowing ----------------------------------------------------------------------------------


def nvidia_reference_autoencode(frames: np.ndarray, autoencode, window: int = 17) -> np.ndarray:
    """video_cli's loop on uint8 [B,T,H,W,3] frames, written from its description: windows of `window`
    frames, each zero-padded to multiples of 16 (extra pixel right/bottom) and edge-padded in time to
    (frames-1) % 8 == 0 (half in front), run, cropped, concatenated."""
    outputs = []
    for i in range((frames.shape[1] - 1) // window + 1):
        batch = frames[:, i * window : (i + 1) * window]
        t, h, w = batch.shape[1:4]
        ph, pw, pt = (16 - h % 16) % 16, (16 - w % 16) % 16, (8 - (t - 1) % 8) % 8
        batch = np.pad(batch, ((0, 0), (0, 0), (ph >> 1, ph - (ph >> 1)), (pw >> 1, pw - (pw >> 1)), (0, 0)))
        batch = np.pad(batch, ((0, 0), (pt >> 1, pt - (pt >> 1)), (0, 0), (0, 0), (0, 0)), mode="edge")
        x = torch.from_numpy(batch).permute(0, 4, 1, 2, 3).float() / 255 * 2 - 1
        y = autoencode(x).permute(0, 2, 3, 4, 1).numpy()
        outputs.append(y[:, pt >> 1 : (pt >> 1) + t, ph >> 1 : (ph >> 1) + h, pw >> 1 : (pw >> 1) + w])
    return np.concatenate(outputs, axis=1)


def test_nvidia_windows_layout() -> None:
    assert [(w.start, w.stop, w.front, w.back) for w in nvidia_windows(17, 64, 64)] == [(0, 17, 0, 0)]
    assert [(w.start, w.stop, w.front, w.back) for w in nvidia_windows(18, 64, 64)] == [(0, 17, 0, 0), (17, 18, 0, 0)]
    assert [(w.start, w.stop, w.front, w.back) for w in nvidia_windows(22, 64, 64)] == [(0, 17, 0, 0), (17, 22, 2, 2)]
    win = nvidia_windows(23, 40, 57)[-1]
    assert (win.front, win.back, win.top, win.bottom, win.left, win.right) == (1, 2, 4, 4, 3, 4)
    assert win.padded_frames == 9 and win.latent_frames(8) == 2 and win.latent_frames(4) == 3
    x = torch.rand(1, 3, 23, 40, 57) * 2 - 1
    padded = pad_window(x, win)
    assert padded.shape == (1, 3, 9, 48, 64)
    assert (padded[..., :4, :] == -1).all() and (padded[..., :, -4:] == -1).all()
    assert torch.equal(padded[:, :, 0, 4:44, 3:60], x[:, :, 17]) and torch.equal(
        padded[:, :, -1, 4:44, 3:60], x[:, :, 22]
    )
    assert torch.equal(crop_window(padded, win), x[:, :, 17:23])


@pytest.mark.parametrize("name", ["CV8x8x8-720p", "DV4x8x8-360p"])
@torch.no_grad()
def test_nvidia_windowing_matches_video_cli_loop(name: str) -> None:
    tok = set_memory_format(small(name), torch.channels_last_3d)

    def autoencode(x: torch.Tensor) -> torch.Tensor:
        return tok.decode(codes_of(tok, tok.encode(x)))

    frames = np.random.default_rng(0).integers(0, 256, (1, 22, 21, 38, 3), dtype=np.uint8)  # pads to 32x48
    x = torch.from_numpy(frames).permute(0, 4, 1, 2, 3).float() / 255 * 2 - 1
    expected = nvidia_reference_autoencode(frames, autoencode)
    actual = nvidia_autoencode(x, autoencode)
    assert actual.shape == (1, 3, 22, 21, 38)
    np.testing.assert_allclose(actual.permute(0, 2, 3, 4, 1).numpy(), expected, atol=1e-5, rtol=0)
    encode = (lambda v: tok.encode(v)[0]) if tok.config.is_discrete else tok.encode
    decode = tok.decode_indices if tok.config.is_discrete else tok.decode
    tokens = nvidia_encode(x, encode)
    assert tokens.shape[-3] == {8: 3 + 2, 4: 5 + 3}[tok.compression[0]]  # windows of 17 and 5 (padded to 9) frames
    assert torch.allclose(nvidia_decode(tokens, decode, 22, 21, 38, tok.compression[0]), actual, atol=1e-5)
