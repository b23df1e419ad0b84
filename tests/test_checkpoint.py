"""load_tokenizer / export_jit: every checkpoint layout a user may hold, and the errors for the rest."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import vtok
from vtok.checkpoint.state_dict import ema_state_dict, is_constant_buffer, training_state_dict

SMALL = {
    "CV8x8x8-720p": 16,
    "CV4x8x8-360p": 16,
    "DV8x16x16-720p": 16,
    "DV4x8x8-360p": 16,
    "CI8x8-360p": 32,
    "DI8x8-360p": 32,
}


def small(name: str, seed: int = 0, **overrides) -> vtok.Tokenizer:
    torch.manual_seed(seed)
    return vtok.build_tokenizer(name, channels=SMALL[name], **overrides).eval()


def example_input(tok: vtok.Tokenizer, frames_extra: int = 1, seed: int = 3) -> torch.Tensor:
    tc, sc = tok.compression
    g = torch.Generator().manual_seed(seed)
    shape = (1, 3, 1 + frames_extra * tc, 2 * sc, 2 * sc) if tok.config.is_video else (1, 3, 2 * sc, 2 * sc)
    return torch.rand(shape, generator=g) * 2 - 1


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module, cast=None) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb)
    for key, value in sa.items():
        rounded = cast is not None and value.is_floating_point() and not is_constant_buffer(key)
        expected = value.to(cast).to(value.dtype) if rounded else value
        assert torch.equal(expected, sb[key]), key


def save_training(tok: vtok.Tokenizer, path: Path, ema_offset: float = 1.0, dtype=torch.bfloat16) -> Path:
    """A checkpoint in the reference trainer's layout: bf16 network, fp32 EMA, training state."""
    state = tok.state_dict()
    model = {k: v.to(dtype) for k, v in training_state_dict(state).items()}
    model.update({k: v + ema_offset for k, v in ema_state_dict(state).items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"model": model, "optimizer": {}, "scheduler": {"last_epoch": 7}, "grad_scaler": {}, "iteration": 7}, path
    )
    return path


@pytest.mark.parametrize("name", ["CV8x8x8-720p", "DV4x8x8-360p", "DI8x8-360p"])
def test_training_checkpoint_in_reference_layout(tmp_path, name):
    tok = small(name)
    path = save_training(tok, tmp_path / "run" / "iter_000000007.pt")
    loaded = vtok.load_tokenizer(path, name)
    assert_same_weights(tok, loaded, cast=torch.bfloat16)
    assert loaded.dtype == torch.float32 and not loaded.training


def test_ema_weights_on_request(tmp_path):
    tok = small("CV8x8x8-720p")
    path = save_training(tok, tmp_path / "iter_000000007.pt", ema_offset=1.0)
    ema = vtok.load_tokenizer(path, "CV8x8x8-720p", ema=True)
    regular = vtok.load_tokenizer(path, "CV8x8x8-720p")
    key = "encoder.conv_in.0.conv3d.weight"
    torch.testing.assert_close(ema.state_dict()[key], tok.state_dict()[key] + 1.0)
    assert not torch.equal(ema.state_dict()[key], regular.state_dict()[key])
    assert vtok.load_tokenizer(path, "CV8x8x8-720p", ema=None).load_info["ema"] is True


def test_ema_requested_but_absent(tmp_path):
    tok = small("CV8x8x8-720p")
    path = tmp_path / "flat.pt"
    torch.save(tok.state_dict(), path)
    with pytest.raises(ValueError, match="no 'ema.network-"):
        vtok.load_tokenizer(path, "CV8x8x8-720p", ema=True)


@pytest.mark.parametrize("layout", ["flat_bare", "flat_network", "orig_mod", "state_dict_key"])
def test_other_layouts(tmp_path, layout):
    tok = small("DV8x16x16-720p")
    bare = tok.state_dict()
    state = {
        "flat_bare": bare,
        "flat_network": {f"network.{k}": v for k, v in bare.items()},
        "orig_mod": {"model": {f"network._orig_mod.{k}": v for k, v in bare.items()}},
        "state_dict_key": {"state_dict": bare},
    }[layout]
    path = tmp_path / "ckpt.pt"
    torch.save(state, path)
    assert_same_weights(tok, vtok.load_tokenizer(path))


@pytest.mark.parametrize("name", list(SMALL))
def test_name_inferred_from_tensor_shapes(tmp_path, name):
    path = save_training(small(name), tmp_path / "anonymous" / "iter_000000007.pt")
    loaded = vtok.load_tokenizer(path)
    assert loaded.name == name
    assert loaded.config.channels == SMALL[name]


def test_name_from_release_folder_and_jit_preferred(tmp_path):
    tok = small("DV4x8x8-360p")
    folder = tmp_path / "checkpoints" / "Cosmos-Tokenize1-DV4x8x8-360p"
    save_training(small("DV4x8x8-360p", seed=5), folder / "model.pt")
    vtok.export_jit(tok, folder, dtype=torch.float32)
    loaded = vtok.load_tokenizer(folder)
    assert loaded.name == "DV4x8x8-360p"
    assert loaded.load_info["files"] == [str(folder / "encoder.jit"), str(folder / "decoder.jit")]
    assert_same_weights(tok, loaded)


def test_release_folder_with_only_model_pt(tmp_path):
    tok = small("CV4x8x8-360p")
    folder = tmp_path / "Cosmos-Tokenize1-CV4x8x8-360p"
    save_training(tok, folder / "model.pt", dtype=torch.float32)
    assert_same_weights(tok, vtok.load_tokenizer(folder))


@pytest.mark.parametrize("name", ["CV8x8x8-720p", "DV8x16x16-720p", "CI8x8-360p", "DI8x8-360p"])
def test_exported_jit_is_nvidia_compatible(tmp_path, name):
    """vtok's files load strictly into the reference's jit views (persistent FSQ buffers), and back."""
    tok = small(name)
    files = vtok.export_jit(tok, tmp_path, dtype=torch.float32)
    assert {p.name for p in tmp_path.iterdir()} == {"encoder.jit", "decoder.jit", "autoencoder.jit"}
    reference_layout = small(name, seed=9, persistent_quantizer=True)
    reference_layout.encoder_jit().load_state_dict(torch.jit.load(str(files["encoder"])).state_dict(), strict=True)
    reference_layout.decoder_jit().load_state_dict(torch.jit.load(str(files["decoder"])).state_dict(), strict=True)
    reference_weights = reference_layout.state_dict()
    assert all(torch.equal(v, reference_weights[k]) for k, v in tok.state_dict().items())
    for part in ("encoder", "decoder", "autoencoder"):
        loaded = vtok.load_tokenizer(files[part])
        assert loaded.name == name
        expected_parts = {"encoder", "decoder"}
        assert loaded.loaded_parts == expected_parts  # encoder/decoder pick up their sibling
        assert_same_weights(tok, loaded)


def test_bf16_export_runs_in_float32(tmp_path):
    """NVIDIA's DV decoder.jit bakes a bf16 cast; vtok's follows the weights' dtype."""
    tok = small("DV8x16x16-720p")
    files = vtok.export_jit(tok, tmp_path, dtype=torch.bfloat16)
    x = example_input(tok)
    encoder = torch.jit.load(str(files["encoder"]))
    indices, codes, aux = encoder(x.bfloat16())
    assert (
        indices.dtype == torch.int32 and codes.dtype == torch.bfloat16 and aux.shape == (1, 1, 1, 1, indices.shape[-1])
    )
    decoder = torch.jit.load(str(files["decoder"])).float()
    for idx in (indices, indices.long()):
        recon = decoder(idx)
        assert recon.dtype == torch.float32 and recon.shape == x.shape


def test_encoder_only_file_refuses_to_decode(tmp_path):
    tok = small("CV8x8x8-720p")
    vtok.export_jit(tok, tmp_path, names={"encoder": "lonely_encoder.jit"}, dtype=torch.float32)
    loaded = vtok.load_tokenizer(tmp_path / "lonely_encoder.jit")
    assert loaded.loaded_parts == {"encoder"}
    x = example_input(tok)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(x), tok.encode(x))
        with pytest.raises(RuntimeError, match="without decoder weights"):
            loaded.decode(tok.encode(x))


def test_training_jit_names_pair_up(tmp_path):
    tok = small("DV4x8x8-360p")
    names = {"encoder": "iter_000000010_enc.jit", "decoder": "iter_000000010_dec.jit"}
    vtok.export_jit(tok, tmp_path, names=names, dtype=torch.float32)
    loaded = vtok.load_tokenizer(tmp_path / "iter_000000010_dec.jit")
    assert loaded.loaded_parts == {"encoder", "decoder"}
    x = example_input(tok)
    with torch.no_grad():
        assert torch.equal(loaded.encode(x)[0], tok.encode(x)[0])


def test_export_refuses_single_frame_example(tmp_path):
    tok = small("CV8x8x8-720p")
    with pytest.raises(ValueError, match="T >= 9"):
        vtok.export_jit(tok, tmp_path, example_shape=(1, 3, 1, 32, 32))
    assert not any(tmp_path.iterdir())


def test_export_leaves_no_temporary_files_and_keeps_model(tmp_path):
    tok = small("CV4x8x8-360p")
    before = {k: v.clone() for k, v in tok.state_dict().items()}
    vtok.export_jit(tok, tmp_path, dtype=torch.bfloat16)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["autoencoder.jit", "decoder.jit", "encoder.jit"]
    assert tok.dtype == torch.float32
    assert all(torch.equal(before[k], v) for k, v in tok.state_dict().items())


def test_wrong_fsq_levels_are_refused(tmp_path):
    tok = small("DV8x16x16-720p", levels=(8, 8, 8, 6, 5, 5), persistent_quantizer=True)
    path = tmp_path / "Cosmos-Tokenize1-DV8x16x16-720p" / "model.pt"
    path.parent.mkdir()
    torch.save(tok.state_dict(), path)
    with pytest.raises(ValueError, match="quantizer._levels"):
        vtok.load_tokenizer(path)


def test_shape_mismatch_is_reported(tmp_path):
    path = save_training(small("CV8x8x8-720p"), tmp_path / "iter.pt")
    with pytest.raises(ValueError, match="wrong shape: encoder.conv_in.0.conv3d.weight file"):
        vtok.load_tokenizer(path, "CV8x8x8-720p", channels=32)


def test_unknown_override_is_refused(tmp_path):
    path = save_training(small("CV8x8x8-720p"), tmp_path / "iter.pt")
    with pytest.raises(ValueError, match="chanels"):
        vtok.load_tokenizer(path, chanels=16)


def test_foreign_files_fail_with_a_clear_message(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt: not a PyTorch checkpoint or TorchScript file"):
        vtok.load_tokenizer(junk)
    other = tmp_path / "other.pt"
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, other)
    with pytest.raises(ValueError, match="none of its 1 tensors belong to a tokenizer"):
        vtok.load_tokenizer(other)
    odd = tmp_path / "odd.pt"
    tok = small("CV8x8x8-720p", channels_mult=(2, 4))
    torch.save(tok.state_dict(), odd)
    with pytest.raises(ValueError, match="fits none of"):
        vtok.load_tokenizer(odd)
    with pytest.raises(FileNotFoundError):
        vtok.load_tokenizer(tmp_path / "missing.pt")
    empty = tmp_path / "empty_release"
    empty.mkdir()
    with pytest.raises(ValueError, match="no tokenizer checkpoint found"):
        vtok.load_tokenizer(empty)


def test_load_casts_to_requested_dtype(tmp_path):
    path = save_training(small("DV4x8x8-360p"), tmp_path / "iter.pt")
    tok = vtok.load_tokenizer(path, dtype=torch.bfloat16)
    assert tok.dtype == torch.bfloat16
    x = example_input(tok)
    with torch.no_grad():
        indices, codes = tok.encode(x)
        assert codes.dtype == torch.bfloat16 and indices.dtype == torch.int32
        assert tok.decode_indices(indices).dtype == torch.bfloat16
