"""Properties of the networks that need no reference data: Haar, FSQ, shapes, validation, causality,
dtypes, tracing and train/eval equivalence (docs/design.md#networks)."""

from __future__ import annotations

import functools
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import IMAGE_MODELS, VIDEO_MODELS, random_input, small_tokenizer

import vtok
from vtok.networks.fsq import FSQuantizer
from vtok.networks.patching import Patcher, Patcher3D, UnPatcher, UnPatcher3D

LEVELS = (8, 8, 8, 5, 5, 5)
BASIS = (1, 8, 64, 512, 2560, 12800)  # cumulative products of the levels
SIGNS = torch.tensor([[1.0, 1.0], [1.0, -1.0]])  # s(band, position): low = (+,+), high = (+,-)


@functools.cache
def shared_tokenizer(name: str) -> vtok.Tokenizer:
    """A small eval-mode model reused by tests that neither modify nor train it."""
    torch.manual_seed(0)
    return small_tokenizer(name)


def video_input(
    name: str, chunks: int = 1, height: int = 32, width: int = 32, seed: int = 1, batch: int = 1
) -> torch.Tensor:
    """A clip of 1 + chunks*tc frames (32 is a multiple of every model's spatial compression)."""
    tc = vtok.networks.get_config(name).temporal_compression
    return random_input(batch, 3, 1 + chunks * tc, height, width, seed=seed)


def continuous_latent(tok: vtok.Tokenizer, x: torch.Tensor) -> torch.Tensor:
    """The latent before any quantization: quant_conv(encoder(x)) (the FSQ input for DV)."""
    return tok.quant_conv(tok.encoder(x))


def trace(module: torch.nn.Module, example: torch.Tensor):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return torch.jit.trace(module, example, check_trace=False)


# ---------------------------------------------------------------------------------------------------
# Haar patchers


def haar3d_closed_form(x: torch.Tensor) -> torch.Tensor:
    """One 3D round: band (bt,bh,bw) of channel c over a 2x2x2 block = 1/8 sum s(bt,dt)s(bh,dh)s(bw,dw) x,
    stored at channel (4bt+2bh+bw)*C + c."""
    b, c, t, h, w = x.shape
    blocks = x.reshape(b, c, t // 2, 2, h // 2, 2, w // 2, 2)
    out = torch.einsum("ip,jq,kr,bctphqwr->bijkcthw", SIGNS, SIGNS, SIGNS, blocks) / 8
    return out.reshape(b, 8 * c, t // 2, h // 2, w // 2)


def haar2d_closed_form(x: torch.Tensor) -> torch.Tensor:
    """One 2D round: band (bw,bh) = 1/4 sum s(bw,dw)s(bh,dh) x at channel (2bw+bh)*C + c. W is the most
    significant band letter, as in the reference's Patcher._dwt (pinned by the image parity vectors)."""
    b, c, h, w = x.shape
    blocks = x.reshape(b, c, h // 2, 2, w // 2, 2)
    out = torch.einsum("kr,jq,bchqwr->bkjchw", SIGNS, SIGNS, blocks) / 4
    return out.reshape(b, 4 * c, h // 2, w // 2)


def with_repeated_first_frame(x: torch.Tensor, ps: int) -> torch.Tensor:
    return torch.cat([x[:, :, :1]] * (ps - 1) + [x], dim=2)


def dyadic(*shape: int) -> torch.Tensor:
    """Integers / 8: every Haar step on these is exact in float32."""
    return torch.randint(-64, 64, shape).float() / 8


PATCHER_CASES = [
    pytest.param(Patcher3D, UnPatcher3D, ps, shape, id=f"3d-ps{ps}-T{shape[2]}")
    for ps in (2, 4)
    for shape in [(2, 3, 1, 8, 16), (2, 3, 1 + 2 * ps, 8, 16)]
] + [pytest.param(Patcher, UnPatcher, ps, (2, 3, 8, 16), id=f"2d-ps{ps}") for ps in (2, 4)]


@pytest.mark.parametrize("patcher_cls, unpatcher_cls, ps, shape", PATCHER_CASES)
def test_haar_round_trip(patcher_cls, unpatcher_cls, ps, shape) -> None:
    patch, unpatch = patcher_cls(ps), unpatcher_cls(ps)
    x = torch.randn(shape)
    torch.testing.assert_close(unpatch(patch(x)), x, rtol=0, atol=1e-6)
    x = dyadic(*shape)
    assert torch.equal(unpatch(patch(x)), x)


@pytest.mark.parametrize("ps", [2, 4])
def test_patcher3d_output_shape(ps: int) -> None:
    x = torch.randn(1, 3, 1 + 2 * ps, 8, 16)
    assert Patcher3D(ps)(x).shape == (1, 3 * ps**3, 3, 8 // ps, 16 // ps)


def test_patcher3d_channel0_is_block_mean() -> None:
    x = torch.randn(2, 3, 5, 8, 8)
    out = Patcher3D(2)(x)
    torch.testing.assert_close(out[:, :3], F.avg_pool3d(with_repeated_first_frame(x, 2), 2), rtol=0, atol=1e-6)


def test_patcher3d_band1_closed_form() -> None:
    """Band 1 = (bt,bh,bw) = (0,0,1): (1/8) sum over each 2x2x2 block of x, signed -1 on the odd width sample."""
    x = torch.randn(1, 3, 5, 4, 6)
    xr = with_repeated_first_frame(x, 2)
    signed = xr[..., 0::2] - xr[..., 1::2]  # +x on the even width sample, -x on the odd one
    time_summed = signed[:, :, 0::2] + signed[:, :, 1::2]
    expected = (time_summed[..., 0::2, :] + time_summed[..., 1::2, :]) / 8
    torch.testing.assert_close(Patcher3D(2)(x)[:, 3:6], expected, rtol=0, atol=1e-6)  # channels band*C + c


@pytest.mark.parametrize("ps", [2, 4])
def test_patcher3d_closed_form_every_band(ps: int) -> None:
    """All 8 bands of each round, in the order band2*(8C) + band1*C + c for two rounds."""
    x = torch.randn(1, 3, 1 + 2 * ps, 8, 8)
    expected = with_repeated_first_frame(x, ps)
    for _ in range(int(math.log2(ps))):
        expected = haar3d_closed_form(expected)
    torch.testing.assert_close(Patcher3D(ps)(x), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("ps", [2, 4])
def test_patcher2d_closed_form_every_band(ps: int) -> None:
    x = torch.randn(2, 3, 8, 12)
    expected = x
    for _ in range(int(math.log2(ps))):
        expected = haar2d_closed_form(expected)
    torch.testing.assert_close(Patcher(ps)(x), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(Patcher(ps)(x)[:, :3], F.avg_pool2d(x, ps), rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------------
# FSQ


@pytest.fixture(scope="module")
def fsq() -> FSQuantizer:
    return FSQuantizer(LEVELS)


def test_fsq_constants(fsq: FSQuantizer) -> None:
    assert fsq.codebook_size == 64000
    assert fsq._basis.tolist() == list(BASIS) and fsq._basis.dtype == torch.int32
    assert fsq._levels.tolist() == list(LEVELS) and fsq._levels.dtype == torch.int32


def test_fsq_every_index_round_trips(fsq: FSQuantizer) -> None:
    indices = torch.arange(64000, dtype=torch.int32).reshape(1, 64000)
    codes = fsq.indices_to_codes(indices)  # channels-first [1, 6, 64000]
    assert codes.shape == (1, 6, 64000)
    # The spec's formula: digit_d = (i // basis_d) % L_d, code_d = (digit_d - hw_d) / hw_d.
    digits = torch.arange(64000)[:, None] // torch.tensor(BASIS) % torch.tensor(LEVELS)
    half_width = torch.tensor(LEVELS) // 2
    assert torch.equal(codes[0].T.float(), (digits - half_width) / half_width)
    back = fsq.codes_to_indices(codes.movedim(1, -1))  # takes channels-last
    assert back.dtype == torch.int32
    assert torch.equal(back, indices)


@pytest.mark.parametrize(
    "value, code, index",
    [
        (-1e3, [-1.0] * 6, 0),
        (1e3, [0.75, 0.75, 0.75, 1.0, 1.0, 1.0], 63999),
        (0.0, [0.0] * 6, 32036),
    ],
)
def test_fsq_extremes_and_zero(fsq: FSQuantizer, value: float, code: list, index: int) -> None:
    z = torch.full((2, 6, 1, 2, 3), value)
    indices, codes, aux = fsq(z)
    assert indices.dtype == torch.int32 and indices.shape == (2, 1, 2, 3)
    assert (indices == index).all()
    assert torch.equal(codes, torch.tensor(code).reshape(1, 6, 1, 1, 1).expand_as(codes))
    assert aux.shape == (2, 1, 1, 1, 3) and not aux.any()
    assert fsq.codes_to_indices(torch.tensor(code)).item() == index


def test_fsq_bf16_input_rounds_in_fp32(fsq: FSQuantizer) -> None:
    z16 = (torch.randn(2, 6, 3, 8, 8) * 2).to(torch.bfloat16)
    i16, c16, _ = fsq(z16)
    i32, c32, _ = fsq(z16.float())
    assert c16.dtype == torch.bfloat16 and c32.dtype == torch.float32
    assert torch.equal(i16, i32)
    assert torch.equal(c16.float(), c32)


def test_fsq_every_level_is_reached(fsq: FSQuantizer) -> None:
    _, codes, _ = fsq(torch.randn(1, 6, 64, 64) * 3)
    for channel, level in enumerate(LEVELS):
        assert codes[0, channel].unique().numel() == level


def test_fsq_straight_through_gradient(fsq: FSQuantizer) -> None:
    z = torch.randn(1, 6, 2, 4, 4, requires_grad=True)
    _, codes, _ = fsq(z)
    codes.sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
    assert (z.grad != 0).all()


# ---------------------------------------------------------------------------------------------------
# Shapes and input validation


@pytest.mark.parametrize("frames", [1, 9, 17, 25, 121])
@pytest.mark.parametrize("name", VIDEO_MODELS)
def test_video_shapes(name: str, frames: int) -> None:
    tok = shared_tokenizer(name)
    tc, sc = tok.compression
    x = random_input(1, 3, frames, 32, 48)
    with torch.no_grad():
        out = tok(x)
    latent_t = 1 + (frames - 1) // tc
    expected = (1, tok.config.latent_dim, latent_t, 32 // sc, 48 // sc)
    assert tok.latent_shape(tuple(x.shape)) == expected
    if tok.config.is_discrete:
        assert tuple(out.latent.shape) == (1, latent_t, 32 // sc, 48 // sc)
    else:
        assert tuple(out.latent.shape) == expected
    assert out.reconstructions.shape == x.shape


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_image_shapes(name: str) -> None:
    tok = shared_tokenizer(name)
    _, sc = tok.compression
    x = random_input(2, 3, 32, 48)
    with torch.no_grad():
        out = tok(x)
    expected = (2, tok.config.latent_dim, 32 // sc, 48 // sc)
    assert tok.latent_shape(tuple(x.shape)) == expected
    assert tuple(out.latent.shape) == (expected if not tok.config.is_discrete else (2, 32 // sc, 48 // sc))
    assert out.reconstructions.shape == x.shape


@pytest.mark.parametrize(
    "name, shape, message",
    [
        ("CV8x8x8-720p", (1, 3, 10, 32, 32), "T-1 must be a multiple of 8"),
        ("CV8x8x8-720p", (1, 3, 9, 36, 32), "H and W must be multiples of 8"),
        ("CV8x8x8-720p", (1, 3, 9, 32, 36), "H and W must be multiples of 8"),
        ("CV4x8x8-360p", (1, 3, 7, 32, 32), "T-1 must be a multiple of 4"),
        ("DV8x16x16-720p", (1, 3, 9, 32, 40), "H and W must be multiples of 16"),
        ("DV4x8x8-360p", (1, 3, 6, 32, 32), "T-1 must be a multiple of 4"),
        ("CV8x8x8-720p", (1, 4, 9, 32, 32), "C=3"),
        ("DV4x8x8-360p", (1, 3, 32, 32), r"\[B,C,T,H,W\]"),
        ("CI8x8-360p", (1, 3, 1, 32, 32), r"\[B,C,H,W\]"),
        ("DI8x8-360p", (1, 3, 32, 20), "H and W must be multiples of 8"),
    ],
)
def test_encode_rejects_bad_shapes(name: str, shape: tuple, message: str) -> None:
    tok = shared_tokenizer(name)
    with pytest.raises(ValueError, match=message):
        tok.encode(torch.zeros(shape))
    with pytest.raises(ValueError, match=message):
        tok.latent_shape(shape)


@pytest.mark.parametrize("name", ["CV8x8x8-720p", "DV4x8x8-360p", "CI8x8-360p"])
def test_decode_rejects_bad_latents(name: str) -> None:
    tok = shared_tokenizer(name)
    rank = 5 if tok.config.is_video else 4
    with pytest.raises(ValueError, match="decodes latents"):
        tok.decode(torch.zeros((1, tok.config.latent_dim + 1) + (2,) * (rank - 2)))
    with pytest.raises(ValueError, match="decodes latents"):
        tok.decode(torch.zeros((1, tok.config.latent_dim) + (2,) * (rank - 3)))


def test_decode_indices_rejects_float_and_wrong_rank() -> None:
    tok = shared_tokenizer("DV4x8x8-360p")
    with pytest.raises(ValueError, match="integer indices"):
        tok.decode_indices(torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError, match="rank 4"):
        tok.decode_indices(torch.zeros(1, 4, 4, dtype=torch.int32))


def test_build_tokenizer_rejects_unknown_override() -> None:
    with pytest.raises(ValueError, match="chanels"):
        vtok.build_tokenizer("CV8x8x8-720p", chanels=8)


def test_build_tokenizer_rejects_unknown_model() -> None:
    with pytest.raises(ValueError, match="unknown tokenizer"):
        vtok.build_tokenizer("CV9x9x9-720p")


# ---------------------------------------------------------------------------------------------------
# Causality


@pytest.mark.parametrize(
    "name, frame",
    [
        ("CV8x8x8-720p", 1),
        ("CV8x8x8-720p", 9),
        ("CV8x8x8-720p", 12),
        ("DV4x8x8-360p", 1),
        ("DV4x8x8-360p", 5),
        ("DV4x8x8-360p", 7),
        ("DV4x8x8-360p", 14),
    ],
)
def test_causality(name: str, frame: int) -> None:
    """Perturbing frame k changes no latent before its chunk ceil(k/tc), and no decoded frame before the
    chunk's first frame 1+(ceil(k/tc)-1)*tc; the chunk itself and everything after it do change.

    Unchanged outputs are in practice bit-identical; a random-init decoder barely reacts to its input
    (changes of ~1e-4), hence a "changed" threshold of 1e-5, ten times the "unchanged" tolerance."""
    tok = shared_tokenizer(name)
    tc, _ = tok.compression
    x = video_input(name, chunks=16 // tc)
    perturbed = x.clone()
    perturbed[:, :, frame] = random_input(1, 3, 32, 32, seed=7)
    chunk = math.ceil(frame / tc)
    first = 1 + (chunk - 1) * tc
    with torch.no_grad():
        z, z2 = continuous_latent(tok, x), continuous_latent(tok, perturbed)
        y, y2 = tok.decode(z), tok.decode(z2)

    torch.testing.assert_close(z2[:, :, :chunk], z[:, :, :chunk], rtol=0, atol=1e-6)
    for i in range(chunk, z.shape[2]):
        assert (z2[:, :, i] - z[:, :, i]).abs().max() > 1e-5, f"latent {i} ignores frame {frame}"
    torch.testing.assert_close(y2[:, :, :first], y[:, :, :first], rtol=0, atol=1e-6)
    for i in range(first, y.shape[2]):
        assert (y2[:, :, i] - y[:, :, i]).abs().max() > 1e-5, f"decoded frame {i} ignores latent {chunk}"


@pytest.mark.parametrize("name", ["CV4x8x8-360p", "DV8x16x16-720p", "CI8x8-360p"])
def test_batch_elements_are_independent(name: str) -> None:
    """A batch of two gives the outputs of the two inputs run alone (no mixing in reshapes/attention)."""
    tok = shared_tokenizer(name)
    shape = (3, 1 + tok.compression[0], 32, 48) if tok.config.is_video else (3, 32, 48)
    a, b = random_input(1, *shape, seed=1), random_input(1, *shape, seed=2)
    with torch.no_grad():
        both = tok(torch.cat([a, b]))
        alone = [tok(a), tok(b)]
    for i, single in enumerate(alone):
        torch.testing.assert_close(both.reconstructions[i : i + 1], single.reconstructions, rtol=1e-4, atol=1e-4)
        if tok.config.is_discrete:
            assert torch.equal(both.latent[i : i + 1], single.latent)
        else:
            torch.testing.assert_close(both.latent[i : i + 1], single.latent, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------------
# Dtypes


@pytest.mark.parametrize("name", VIDEO_MODELS + IMAGE_MODELS)
def test_bf16_runs_on_cpu(name: str) -> None:
    """The reference's bf16 encoder fails on CPU (avg_pool3d); vtok's runs and stays in bf16."""
    tok = small_tokenizer(name).to(torch.bfloat16)
    x = video_input(name) if tok.config.is_video else random_input(1, 3, 32, 32)
    with torch.no_grad():
        if tok.config.is_discrete:
            indices, codes = tok.encode(x)
            assert indices.dtype == torch.int32 and codes.dtype == torch.bfloat16
            assert ((indices >= 0) & (indices < 64000)).all()
            for recon in (tok.decode(codes), tok.decode_indices(indices)):
                assert recon.dtype == torch.bfloat16 and recon.shape == x.shape
                assert torch.isfinite(recon).all()
        else:
            latent = tok.encode(x)
            assert latent.dtype == torch.bfloat16
            recon = tok.decode(latent)
            assert recon.dtype == torch.bfloat16 and recon.shape == x.shape
            assert torch.isfinite(recon).all()


@pytest.mark.parametrize("name", ["DV4x8x8-360p", "DI8x8-360p"])
def test_fresh_fp32_discrete_model_runs_in_fp32(name: str) -> None:
    """Unlike the reference (whose FSQ emits bf16 until `.to(dtype=...)`), a fresh model works in fp32."""
    tok = shared_tokenizer(name)
    x = video_input(name) if tok.config.is_video else random_input(1, 3, 32, 32)
    with torch.no_grad():
        indices, codes = tok.encode(x)
        assert codes.dtype == torch.float32
        assert tok.decode_indices(indices).dtype == torch.float32
        assert torch.equal(tok.quantizer.indices_to_codes(indices).float(), codes)


@pytest.mark.parametrize("name", VIDEO_MODELS + IMAGE_MODELS)
def test_train_mode_equals_eval_mode(name: str) -> None:
    """AE and FSQ have no dropout and no batch statistics: train-mode forward is eval-mode forward."""
    tok = small_tokenizer(name)
    x = video_input(name) if tok.config.is_video else random_input(1, 3, 32, 32)
    with torch.no_grad():
        evaluated = tok.eval()(x)
        trained = tok.train()(x)
    assert torch.equal(trained.reconstructions, evaluated.reconstructions)
    assert torch.equal(trained.latent, evaluated.latent)


# ---------------------------------------------------------------------------------------------------
# TorchScript tracing

# (batch, latent chunks - 1, H, W) to evaluate traces at: all differ from the trace's (1, 1, 32, 32).
TRACE_SIZES = [(1, 0, 32, 48), (2, 2, 48, 32)]


def assert_same(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-5)


def check_encoder_output(tok: vtok.Tokenizer, out: tuple, x: torch.Tensor) -> None:
    """The traced encoder's output contract, compared with eager `encode`."""
    assert isinstance(out, tuple) and len(out) in (2, 3)
    if tok.config.is_discrete:
        indices, codes, zeros = out
        eager_indices, eager_codes = tok.encode(x)
        assert indices.dtype == torch.int32 and torch.equal(indices, eager_indices)
        assert_same(codes, eager_codes)
        b, _, _, _, w = codes.shape
        assert zeros.shape == (b, 1, 1, 1, w) and not zeros.any()
    else:
        latent, (first, second) = out
        for placeholder in (first, second):  # the AE posteriors: tensor([0.])
            assert placeholder.shape == (1,) and not placeholder.any()
        assert_same(latent, tok.encode(x))


@pytest.mark.parametrize("name", VIDEO_MODELS)
def test_traced_encoder_generalizes(name: str) -> None:
    tok = shared_tokenizer(name)
    with torch.no_grad():
        traced = trace(tok.encoder_jit(), video_input(name))
        for batch, chunks, h, w in TRACE_SIZES:
            x = video_input(name, chunks, h, w, seed=3, batch=batch)
            check_encoder_output(tok, traced(x), x)


def decoder_tokens(tok: vtok.Tokenizer, x: torch.Tensor) -> torch.Tensor:
    """What decoder.jit takes: the latent (CV) or the int32 token indices (DV)."""
    return tok.encode(x)[0] if tok.config.is_discrete else tok.encode(x)


def eager_decode(tok: vtok.Tokenizer, tokens: torch.Tensor) -> torch.Tensor:
    return tok.decode_indices(tokens) if tok.config.is_discrete else tok.decode(tokens)


@pytest.mark.parametrize("name", VIDEO_MODELS)
def test_traced_decoder_generalizes(name: str) -> None:
    tok = shared_tokenizer(name)
    with torch.no_grad():
        traced = trace(tok.decoder_jit(), decoder_tokens(tok, video_input(name)))
        for batch, chunks, h, w in TRACE_SIZES:
            x = video_input(name, chunks, h, w, seed=3, batch=batch)
            tokens = decoder_tokens(tok, x)
            expected = eager_decode(tok, tokens)
            assert expected.shape == x.shape
            assert_same(traced(tokens), expected)
            if tok.config.is_discrete:  # int64 indices work too, traced and eager
                assert_same(traced(tokens.long()), expected)
                assert_same(tok.decode_indices(tokens.long()), expected)


@pytest.mark.parametrize("name", VIDEO_MODELS)
def test_traced_autoencoder(name: str) -> None:
    tok = shared_tokenizer(name)
    with torch.no_grad():
        traced = trace(tok, video_input(name))
        x = video_input(name, 2, 48, 32, seed=3)
        out, eager = traced(x), tok(x)
    assert isinstance(out, tuple) and len(out) == 3
    reconstructions, aux, latent = out
    assert_same(reconstructions, eager.reconstructions)
    if tok.config.is_discrete:
        assert latent.dtype == torch.int32 and torch.equal(latent, eager.latent)
        assert_same(aux, eager.aux)
    else:
        assert_same(latent, eager.latent)
        assert len(aux) == 2


@pytest.mark.parametrize("name", ["CV8x8x8-720p", "DV4x8x8-360p"])
def test_single_frame_trace_generalizes(name: str) -> None:
    """Spec 8.6 asks that a T=1 trace be refused or warned about; vtok's layers trace without a branch on
    T, so a T=1 trace must give the eager result at longer clips (checked here instead)."""
    tok = shared_tokenizer(name)
    with torch.no_grad():
        x1 = random_input(1, 3, 1, 32, 32)
        encoder = trace(tok.encoder_jit(), x1)
        decoder = trace(tok.decoder_jit(), encoder(x1)[0])
        x = video_input(name, 2, seed=3)
        check_encoder_output(tok, encoder(x), x)
        tokens = decoder_tokens(tok, x)
        assert_same(decoder(tokens), eager_decode(tok, tokens))
