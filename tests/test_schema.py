"""Checkpoint compatibility of the full-size networks with NVIDIA's (`<reference>/schema/*.json`).

The full-size models are built on the meta device: structure, names, shapes and dtypes without
allocating ~110M weights, and forward passes that only propagate shapes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import vtok
from vtok.networks import TokenizerConfig, tokenizer_from_config
from vtok.networks.fsq import FSQuantizer
from vtok.networks.tokenizer import Tokenizer


def entries(state_dict: dict) -> list[tuple[str, list[int], str]]:
    """Ordered (name, shape, dtype) of a state_dict, in the schema's spelling."""
    return [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in state_dict.items()]


def schema_entries(items: list[dict]) -> list[tuple[str, list[int], str]]:
    return [(e["name"], e["shape"], e["dtype"]) for e in items]


def on_meta(network_config: dict, **overrides) -> Tokenizer:
    """The network of a reference config dict, built without allocating its weights."""
    with torch.device("meta"):
        return tokenizer_from_config(TokenizerConfig(**{**network_config, **overrides})).eval()


def count(modules) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def assert_same_entries(actual: list, expected: list, what: str) -> None:
    """Equal ordered lists; on failure, name the first entry that differs."""
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert a == e, f"{what}: entry {i} is {a}, expected {e}"
    assert len(actual) == len(expected), f"{what}: {len(actual)} entries, expected {len(expected)}"


@pytest.fixture
def schema(schema_file: Path) -> dict:
    return json.loads(schema_file.read_text())


@pytest.fixture
def dv_schema(discrete_schema_file: Path) -> dict:
    return json.loads(discrete_schema_file.read_text())


def test_state_dict_names_shapes_dtypes_in_order(schema: dict) -> None:
    tok = on_meta(schema["network_config"])
    assert len(schema["state_dict"]) == schema["state_dict_entries"]
    assert_same_entries(entries(tok.state_dict()), schema_entries(schema["state_dict"]), schema["model"])


def test_parameter_and_buffer_kinds(schema: dict) -> None:
    tok = on_meta(schema["network_config"])
    params = set(dict(tok.named_parameters()))
    kinds = {e["name"]: e["kind"] for e in schema["state_dict"]}
    assert {k for k, v in kinds.items() if v == "parameter"} == params
    assert len(params) == schema["parameter_tensors"]


def test_parameter_counts(schema: dict) -> None:
    tok = on_meta(schema["network_config"])
    assert count([tok]) == schema["parameter_count"]
    assert count([tok.encoder, tok.quant_conv]) == schema["parameter_count_encoder_plus_quant_conv"]
    assert count([tok.decoder, tok.post_quant_conv]) == schema["parameter_count_decoder_plus_post_quant_conv"]


def test_persistent_quantizer_adds_the_fsq_buffers(dv_schema: dict) -> None:
    """DV with persistent FSQ buffers (the .jit layout): the plain list plus _levels, _basis, implicit_codebook."""
    schema = dv_schema
    extra = schema["extra_entries_when_persistent_quantizer_true"]
    tok = on_meta(schema["network_config"], persistent_quantizer=True)
    expected = schema_entries(schema["state_dict"]) + schema_entries(extra)
    assert_same_entries(entries(tok.state_dict()), expected, schema["model"])
    assert tok.state_dict()["quantizer.implicit_codebook"].dtype == torch.bfloat16


def test_persistent_fsq_buffer_values(dv_schema: dict) -> None:
    values = dv_schema["extra_entries_values"]
    quantizer = FSQuantizer(tuple(dv_schema["network_config"]["levels"]), persistent=True)
    state = quantizer.state_dict()
    assert state["_levels"].tolist() == values["quantizer._levels"]
    assert state["_basis"].tolist() == values["quantizer._basis"]
    # implicit_codebook[i] = indices_to_codes(i): digit_d = (i // basis_d) % L_d, code_d = (digit_d - hw_d) / hw_d.
    levels, basis = torch.tensor(values["quantizer._levels"]), torch.tensor(values["quantizer._basis"])
    digits = torch.arange(64000)[:, None] // basis % levels
    half_width = levels // 2
    expected = (digits - half_width) / half_width
    assert torch.equal(state["implicit_codebook"].float(), expected)


@pytest.mark.parametrize("part", ["encoder", "decoder"])
def test_jit_views(schema: dict, part: str) -> None:
    """encoder_jit()/decoder_jit() state dicts have the layout of NVIDIA's encoder.jit/decoder.jit."""
    views = schema["jit_views"]
    tok = on_meta(schema["network_config"], persistent_quantizer=schema["network_config"]["name"] == "DV")
    keys = list(getattr(tok, f"{part}_jit")().state_dict())
    first, last = views[f"{part}_jit_first"], views[f"{part}_jit_last"]
    assert len(keys) == views[f"{part}_jit_entries"]
    assert keys[: len(first)] == first
    assert keys[-len(last) :] == last
    prefixes = views[f"{part}_jit_prefixes"]
    assert sorted({next(p for p in prefixes if k.startswith(p + ".")) for k in keys}) == sorted(prefixes)


def test_probe_shapes(schema: dict) -> None:
    """`tok(x)` on a full-size meta model gives the reference's shapes and dtypes for [1,3,17,256,256]."""
    probe = schema["probe"]
    tok = on_meta(schema["network_config"])
    x = torch.empty(probe["input_shape"], device="meta")
    with torch.no_grad():
        out = tok(x)
        encoded = tok.encode(x)
    assert isinstance(out, vtok.networks.TokenizerOutput)
    assert list(out.reconstructions.shape) == probe["reconstruction_shape"]
    assert str(out.reconstructions.dtype).removeprefix("torch.") == probe["reconstruction_dtype"]
    if "indices_shape" in probe:
        indices, codes = encoded
        assert list(indices.shape) == probe["indices_shape"] and str(indices.dtype) == "torch." + probe["indices_dtype"]
        assert list(codes.shape) == probe["codes_shape"] and str(codes.dtype) == "torch." + probe["codes_dtype"]
        assert out.latent.shape == indices.shape and out.latent.dtype == torch.int32
        assert tok.codebook_size == probe["codebook_size"]
    else:
        assert list(encoded.shape) == probe["latent_shape"]
        assert out.latent.shape == encoded.shape
    assert list(tok.latent_shape(tuple(x.shape))) == probe["latent_shape"]


def test_patcher_buffer_values(schema: dict) -> None:
    # Buffers have no values on meta: build at a small width on the CPU (the buffers do not depend on it).
    tok = tokenizer_from_config(TokenizerConfig(**{**schema["network_config"], "channels": 16}))
    state = tok.state_dict()
    assert schema["patcher_buffer_keys"] == [k for k in state if "patcher" in k]
    for key, value in schema["patcher_buffer_values"].items():
        assert state[key].tolist() == value, key


def test_named_config_builds_the_schema(schema: dict) -> None:
    """`vtok.build_tokenizer(name)` is the training layout (persistent_quantizer=False) of the schema."""
    with torch.device("meta"):
        tok = vtok.build_tokenizer(schema["model"])
    assert tok.config.persistent_quantizer is False
    assert tok.config == TokenizerConfig(**schema["network_config"])
    assert_same_entries(entries(tok.state_dict()), schema_entries(schema["state_dict"]), schema["model"])


# Spec 1.10: the image tokenizers' parameter counts (no reference file needed).
IMAGE_PARAMETER_COUNTS = {
    "CI8x8-360p": 81_384_636,
    "CI16x16-360p": 84_334_524,
    "DI8x8-360p": 83_599_506,
    "DI16x16-360p": 86_549_394,
}


@pytest.mark.parametrize("name", IMAGE_PARAMETER_COUNTS)
def test_image_model_parameter_counts(name: str) -> None:
    with torch.device("meta"):
        tok = vtok.build_tokenizer(name)
    assert count([tok]) == IMAGE_PARAMETER_COUNTS[name]


@pytest.mark.parametrize("name", IMAGE_PARAMETER_COUNTS)
def test_image_model_keys_and_buffers(name: str) -> None:
    """2D keys: plain Conv2d/GroupNorm names and `encoder.patcher`/`decoder.unpatcher` buffers."""
    with torch.device("meta"):
        state = vtok.build_tokenizer(name).state_dict()
    assert list(state["encoder.down.0.block.0.conv1.weight"].shape) == [256, 128, 3, 3]
    assert "encoder.down.0.block.0.norm1.weight" in state
    assert not any(".conv3d." in k or ".norm.norm." in k for k in state)
    patcher_keys = [k for k in state if "patcher" in k]
    assert patcher_keys == [
        "encoder.patcher.wavelets",
        "encoder.patcher._arange",
        "decoder.unpatcher.wavelets",
        "decoder.unpatcher._arange",
    ]
    n_down = int(math.log2(vtok.networks.get_config(name).spatial_compression // 2))
    assert sorted(k for k in state if k.endswith("downsample.conv.weight")) == [
        f"encoder.down.{i}.downsample.conv.weight" for i in range(n_down)
    ]
    assert sorted(k for k in state if k.endswith("upsample.conv.weight")) == [
        f"decoder.up.{i}.upsample.conv.weight" for i in range(3 - n_down, 3)
    ]
