"""Typed configs, model names and the optional VAE head."""

from __future__ import annotations

import pytest
import torch

import vtok
from vtok.networks import TokenizerConfig, canonical_name, get_config


@pytest.mark.parametrize("spelling", ["CV8x8x8-720p", "cv8x8x8_720p", "Cosmos-Tokenize1-CV8x8x8-720p"])
def test_model_name_spellings(spelling):
    assert canonical_name(spelling) == "CV8x8x8-720p"


def test_close_names_are_suggested():
    with pytest.raises(ValueError, match="Did you mean CV8x8x8-720p"):
        canonical_name("CV8x8x8-720")


@pytest.mark.parametrize(
    "override, message",
    [
        ({"channels": "32"}, "channels='32': expected int"),
        ({"channels": True}, "channels=True: expected int"),
        ({"legacy_mode": 1}, "legacy_mode=1: expected bool"),
        ({"patch_size": 3}, "patch_size=3: must be a power of two"),
        ({"patch_method": "rearrange"}, "patch_method='rearrange'"),
        ({"spatial_compression": 64}, "needs 4 downsampling levels"),
        ({"formulation": "VAE"}, "needs z_factor=2"),
        ({"channel": 32}, "did you mean channels"),
    ],
)
def test_bad_overrides_name_the_field(override, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("+", r"\+")):
        get_config("CV8x8x8-720p", **override)


def test_reference_config_dicts_are_accepted():
    """NVIDIA's dicts use lists and every field name vtok keeps; they build the same config."""
    reference = {
        "attn_resolutions": [32],
        "channels": 128,
        "channels_mult": [2, 4, 4],
        "dropout": 0.0,
        "in_channels": 3,
        "num_res_blocks": 2,
        "out_channels": 3,
        "resolution": 1024,
        "patch_size": 4,
        "patch_method": "haar",
        "latent_channels": 16,
        "z_channels": 16,
        "z_factor": 1,
        "num_groups": 1,
        "legacy_mode": False,
        "spatial_compression": 8,
        "temporal_compression": 8,
        "formulation": "AE",
        "encoder": "FACTORIZED",
        "decoder": "FACTORIZED",
        "name": "CV",
    }
    assert TokenizerConfig(**reference) == get_config("CV8x8x8-720p")


def test_config_round_trips_through_a_dict():
    cfg = get_config("DV4x8x8-360p", channels=32)
    assert TokenizerConfig(**cfg.to_dict()) == cfg


def test_vae_head_samples_in_training_and_returns_the_mean_in_eval():
    torch.manual_seed(0)
    tok = vtok.build_tokenizer("CV8x8x8-720p", channels=16, formulation="VAE", z_factor=2)
    assert tok.quant_conv.conv3d.weight.shape[0] == 32 and tok.post_quant_conv.conv3d.weight.shape[1] == 16
    x = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    with torch.no_grad():
        tok.eval()
        first, second = tok.encode(x), tok.encode(x)
        assert torch.equal(first, second) and first.shape == (1, 16, 2, 2, 2)
        out = tok(x)
        mean, logvar = out.aux
        assert torch.equal(out.latent, mean) and logvar.shape == mean.shape
        tok.train()
        assert not torch.equal(tok.encode(x), first)


def test_image_latent_shape():
    tok = vtok.build_tokenizer("DI16x16-360p", channels=32)
    assert tok.latent_shape((2, 3, 64, 96)) == (2, 6, 4, 6)
    with pytest.raises(ValueError, match="multiples of 16"):
        tok.latent_shape((2, 3, 64, 100))


def test_out_of_range_indices_are_refused():
    tok = vtok.build_tokenizer("DV4x8x8-360p", channels=16).eval()
    for bad in (64000, -1):
        with pytest.raises(ValueError, match=r"\[0, 64000\)"):
            tok.decode_indices(torch.full((1, 1, 2, 2), bad, dtype=torch.int32))
