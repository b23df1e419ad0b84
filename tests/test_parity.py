"""Numerical parity with NVIDIA's reference networks (golden vectors in `<reference>/parity/`).

Each vector holds small-width random weights, an input, the reference's outputs and its intermediate
tensors. Every stage is checked on the *stored* input of that stage, so a failure points at the stage
that diverges. Tolerances are the ones the reference README suggests (measured noise is 10-100x
smaller); indices and codes must match exactly.

The max errors seen are printed in the terminal summary ("parity vs NVIDIA reference").
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vtok.networks import TokenizerConfig, tokenizer_from_config
from vtok.networks.tokenizer import Tokenizer

TIGHT = dict(rtol=1e-4, atol=1e-5)  # latent, FSQ input, intermediates
RECON = dict(rtol=1e-4, atol=1e-4)  # reconstructions (values up to ~9)
PREFIX = "state_dict."


class Case:
    """One parity vector: its JSON metadata, its tensors and the network with its weights loaded."""

    def __init__(self, path: Path) -> None:
        self.model = path.name.split(".")[0]
        self.meta = json.loads(path.with_suffix(".json").read_text())
        self.tensors = load_file(str(path))
        self.state_dict = {k[len(PREFIX) :]: v for k, v in self.tensors.items() if k.startswith(PREFIX)}
        self.tok = build(self.meta).eval()
        self.tok.load_state_dict(self.state_dict, strict=True)

    @property
    def discrete(self) -> bool:
        return self.tok.config.is_discrete

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.tensors[key]


def build(meta: dict) -> Tokenizer:
    return tokenizer_from_config(TokenizerConfig(**meta["network_config"]))


@functools.cache
def load_case(path: Path) -> Case:
    return Case(path)


def check_close(log: dict, case: Case, key: str, actual: torch.Tensor, tol: dict, label: str = "") -> None:
    """assert_close against stored `key`, recording the max abs error for the summary."""
    expected = case[key]
    assert actual.shape == expected.shape, f"{case.model} {key}: shape {list(actual.shape)} != {list(expected.shape)}"
    assert actual.dtype == expected.dtype, f"{case.model} {key}: dtype {actual.dtype} != {expected.dtype}"
    err = (actual.double() - expected.double()).abs().max().item()
    log.setdefault(case.model, {})[key.removeprefix("intermediate.") + label] = err
    torch.testing.assert_close(
        actual, expected, **tol, msg=lambda m: f"{case.model} {key} (max abs err {err:.3g}): {m}"
    )


def check_equal(log: dict, case: Case, key: str, actual: torch.Tensor, label: str = "") -> None:
    """Exact equality (indices, codes), recording the number of differing entries."""
    expected = case[key]
    assert actual.dtype == expected.dtype, f"{case.model} {key}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{case.model} {key}: shape {list(actual.shape)} != {list(expected.shape)}"
    mismatches = int((actual != expected).sum())
    log.setdefault(case.model, {})[f"{key}{label} mismatches"] = mismatches
    assert torch.equal(actual, expected), f"{case.model} {key}: {mismatches} entries differ"


def patcher(tok: Tokenizer) -> torch.nn.Module:
    return tok.encoder.patcher3d if tok.config.is_video else tok.encoder.patcher


def unpatcher(tok: Tokenizer) -> torch.nn.Module:
    return tok.decoder.unpatcher3d if tok.config.is_video else tok.decoder.unpatcher


def decoder_input(case: Case) -> torch.Tensor:
    return case["codes" if case.discrete else "latent"]


@pytest.fixture
def case(parity_file: Path) -> Case:
    return load_case(parity_file)


@pytest.fixture
def discrete_case(discrete_parity_file: Path) -> Case:
    return load_case(discrete_parity_file)


def test_vector_matches_its_description(case: Case) -> None:
    """The JSON and the file agree, and vtok's network has the recorded size."""
    assert list(case["input"].shape) == case.meta["input_shape"]
    assert len(case.state_dict) == case.meta["state_dict_entries"]
    assert sum(p.numel() for p in case.tok.parameters()) == case.meta["parameter_count"]


def test_fresh_buffers_equal_reference_buffers(case: Case) -> None:
    """Patcher buffers (the only stored non-parameters) are created with the reference's values."""
    fresh = build(case.meta)
    buffers = dict(fresh.named_buffers())
    stored = {k: v for k, v in case.state_dict.items() if k in buffers}
    assert stored, f"{case.model}: no buffers in the vector"
    for name, value in stored.items():
        assert buffers[name].dtype == value.dtype, name
        assert torch.equal(buffers[name], value), name


@torch.no_grad()
def test_patcher_output(case: Case, parity_log: dict) -> None:
    check_close(parity_log, case, "intermediate.patcher_output", patcher(case.tok)(case["input"]), TIGHT)


@torch.no_grad()
def test_encoder_output(case: Case, parity_log: dict) -> None:
    check_close(parity_log, case, "intermediate.encoder_output", case.tok.encoder(case["input"]), TIGHT)


@torch.no_grad()
def test_encode(case: Case, parity_log: dict) -> None:
    """End-to-end encode: the latent (continuous) or the exact int32 indices and codes (discrete)."""
    if case.discrete:
        indices, codes = case.tok.encode(case["input"])
        check_equal(parity_log, case, "indices", indices)
        check_equal(parity_log, case, "codes", codes)
    else:
        check_close(parity_log, case, "latent", case.tok.encode(case["input"]), TIGHT)


@torch.no_grad()
def test_quant_conv_output(discrete_case: Case, parity_log: dict) -> None:
    """The continuous FSQ input: from the stored encoder output, and end to end from the input."""
    case, key = discrete_case, "intermediate.quant_conv_output"
    check_close(parity_log, case, key, case.tok.quant_conv(case["intermediate.encoder_output"]), TIGHT)
    end_to_end = case.tok.quant_conv(case.tok.encoder(case["input"]))
    check_close(parity_log, case, key, end_to_end, TIGHT, label=" (from input)")


@torch.no_grad()
def test_quantizer_on_stored_fsq_input(discrete_case: Case, parity_log: dict) -> None:
    case = discrete_case
    indices, codes, _ = case.tok.quantizer(case["intermediate.quant_conv_output"])
    check_equal(parity_log, case, "indices", indices, label=" (FSQ on stored input)")
    check_equal(parity_log, case, "codes", codes, label=" (FSQ on stored input)")


@torch.no_grad()
def test_quantizer_probe(discrete_case: Case, parity_log: dict) -> None:
    """The FSQ alone on a synthetic z that reaches every level of every channel."""
    case = discrete_case
    indices, codes, aux = case.tok.quantizer(case["quantizer_probe.input"])
    check_equal(parity_log, case, "quantizer_probe.indices", indices)
    check_equal(parity_log, case, "quantizer_probe.codes", codes)
    assert not aux.any()
    # The probe reaches the whole range of every FSQ channel.
    assert indices.min() >= 0 and indices.max() < 64000
    for channel, level in enumerate(case.tok.quantizer.levels):
        assert codes[:, channel].unique().numel() == level


@torch.no_grad()
def test_indices_to_codes_matches_stored_codes(discrete_case: Case) -> None:
    case = discrete_case
    codes = case.tok.quantizer.indices_to_codes(case["indices"])
    assert torch.equal(codes.float(), case["codes"])


@torch.no_grad()
def test_post_quant_conv_output(case: Case, parity_log: dict) -> None:
    actual = case.tok.post_quant_conv(decoder_input(case))
    check_close(parity_log, case, "intermediate.post_quant_conv_output", actual, TIGHT)


@torch.no_grad()
def test_unpatcher_input(case: Case, parity_log: dict) -> None:
    """Decoder features just before the inverse Haar transform, captured while decoding the stored latent."""
    seen = []
    handle = unpatcher(case.tok).register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        case.tok.decode(decoder_input(case))
    finally:
        handle.remove()
    assert len(seen) == 1
    check_close(parity_log, case, "intermediate.unpatcher_input", seen[0], TIGHT)


@torch.no_grad()
def test_unpatcher_alone(case: Case) -> None:
    """The inverse Haar transform of the stored decoder features is the stored reconstruction."""
    actual = unpatcher(case.tok)(case["intermediate.unpatcher_input"])
    torch.testing.assert_close(actual, case["reconstruction"], **RECON)


@torch.no_grad()
def test_decode(case: Case, parity_log: dict) -> None:
    check_close(parity_log, case, "reconstruction", case.tok.decode(decoder_input(case)), RECON)


@torch.no_grad()
def test_decode_indices(discrete_case: Case, parity_log: dict) -> None:
    """Stored indices -> reconstruction (the reference checked decode_code(indices) == decode(codes))."""
    case = discrete_case
    actual = case.tok.decode_indices(case["indices"])
    err = (actual - case["reconstruction"]).abs().max().item()
    parity_log.setdefault(case.model, {})["reconstruction from indices"] = err
    torch.testing.assert_close(actual, case["reconstruction"], **RECON)
    assert torch.equal(actual, case.tok.decode(case["codes"])), "decode_indices(indices) != decode(codes)"


@torch.no_grad()
def test_forward_matches_stored_outputs(case: Case) -> None:
    """`tok(x)` chains encode and decode: its latent and reconstruction match the reference's."""
    out = case.tok(case["input"])
    if case.discrete:
        assert torch.equal(out.latent, case["indices"])
    else:
        torch.testing.assert_close(out.latent, case["latent"], **TIGHT)
    torch.testing.assert_close(out.reconstructions, case["reconstruction"], **RECON)
