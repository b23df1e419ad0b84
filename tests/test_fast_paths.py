"""The inference fast path (channels_last_3d weights and activations) gives the plain path's numbers.

Speed is measured in bench/, not here: these tests check that the layout vtok picks by default changes
nothing but summation order: same tokens, reconstructions within the parity tolerances and 0.1 dB PSNR.
"""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from safetensors.torch import load_file

import vtok
from vtok.checkpoint import export_jit, load_tokenizer
from vtok.networks.layers3d import pointwise_conv, prepend_first_frame, spatial_conv, temporal_conv
from vtok.networks.memory_format import default_memory_format, memory_format_of, set_memory_format

RECON = dict(rtol=1e-4, atol=1e-4)
CL = torch.channels_last_3d


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.clamp(-1, 1) - b.clamp(-1, 1)) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(4 / mse)


def channels_last_copy(tok: vtok.Tokenizer) -> vtok.Tokenizer:
    return set_memory_format(copy.deepcopy(tok), CL)


def test_prepend_first_frame_keeps_the_layout_and_values():
    x = torch.randn(2, 4, 3, 5, 6)
    plain = prepend_first_frame(x, 2)
    fast = prepend_first_frame(x.contiguous(memory_format=CL), 2)
    assert memory_format_of(fast) == CL and torch.equal(fast, plain)
    assert torch.equal(plain[:, :, :3], x[:, :, :1].expand(-1, -1, 3, -1, -1))


def test_default_layout_is_channels_last_for_video_models_only():
    assert default_memory_format(True, torch.device("cpu")) == CL
    assert default_memory_format(False, torch.device("cpu")) == torch.contiguous_format


def test_parity_vectors_match_in_channels_last(parity_file):
    """Same tokens and reconstructions on NVIDIA's parity inputs; PSNR vs the input within 0.1 dB."""
    tensors = load_file(str(parity_file))
    state = {k.removeprefix("state_dict."): v for k, v in tensors.items() if k.startswith("state_dict.")}
    meta = json.loads(parity_file.with_suffix(".json").read_text())
    tok = vtok.tokenizer_from_config(vtok.TokenizerConfig(**meta["network_config"])).eval()
    tok.load_state_dict(state)
    if not tok.config.is_video:
        pytest.skip("image models keep the contiguous layout")
    fast, x = channels_last_copy(tok), tensors["input"]
    with torch.inference_mode():
        plain_out, fast_out = tok(x), fast(x)
    if tok.config.is_discrete:
        assert torch.equal(plain_out.latent, fast_out.latent)
    torch.testing.assert_close(fast_out.reconstructions, plain_out.reconstructions, **RECON)
    torch.testing.assert_close(fast_out.reconstructions, tensors["reconstruction"], **RECON)
    assert abs(psnr(fast_out.reconstructions, x) - psnr(plain_out.reconstructions, x)) < 0.1


@pytest.mark.parametrize("factory", [spatial_conv, temporal_conv, pointwise_conv])
def test_causal_conv_in_channels_last_matches(factory):
    """A conv large enough for oneDNN (PyTorch sends B*C*T*H <= 20480 to its own kernel in any layout)."""
    torch.manual_seed(0)
    conv = factory(128, 128)
    x = torch.randn(1, 128, 6, 32, 32)
    with torch.inference_mode():
        plain = conv(x)
        fast = set_memory_format(copy.deepcopy(conv), CL)(x.contiguous(memory_format=CL))
    assert memory_format_of(fast) == CL
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["CV8x8x8-720p", "DV8x16x16-720p"])
def test_wider_model_matches_in_channels_last(name):
    torch.manual_seed(0)
    tok = vtok.build_tokenizer(name, channels=32).eval()
    fast = channels_last_copy(tok)
    x = torch.rand(1, 3, 9, 128, 128, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.inference_mode():
        plain_out, fast_out = tok(x), fast(x)
        plain_rec = tok.decode(tok.encode(x)[1] if tok.config.is_discrete else tok.encode(x))
        fast_rec = fast.decode(fast.encode(x)[1] if tok.config.is_discrete else fast.encode(x))
    if tok.config.is_discrete:
        assert (plain_out.latent != fast_out.latent).float().mean() < 1e-3  # FSQ rounding ties, if any
    else:
        torch.testing.assert_close(fast_out.latent, plain_out.latent, rtol=1e-4, atol=1e-4)
    assert abs(psnr(fast_rec, x) - psnr(plain_rec, x)) < 0.1
    assert psnr(fast_rec, plain_rec) > 60


def test_load_tokenizer_gives_channels_last_and_exports_plain_tensors(tmp_path):
    torch.manual_seed(0)
    tok = vtok.build_tokenizer("CV8x8x8-720p", channels=16).eval()
    path = tmp_path / "model.pt"
    torch.save(tok.state_dict(), path)
    loaded = load_tokenizer(path, "CV8x8x8-720p", channels=16)
    assert loaded.memory_format == CL
    assert (
        load_tokenizer(path, "CV8x8x8-720p", channels=16, memory_format=torch.contiguous_format).memory_format
        == torch.contiguous_format
    )
    x = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x).reconstructions, tok(x).reconstructions, **RECON)
    written = export_jit(loaded, tmp_path / "jit", example_shape=(1, 3, 9, 32, 32), dtype=torch.float32)
    encoder = torch.jit.load(str(written["encoder"]))
    assert all(p.is_contiguous() for p in encoder.parameters())
    with torch.inference_mode():
        torch.testing.assert_close(encoder(x)[0], tok.encode(x), **RECON)
