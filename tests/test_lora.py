"""LoRA adapters on the video networks' Conv3d layers, and what `trainable` freezes."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

import vtok
from vtok.networks.lora import (
    LoRASettings,
    adapters,
    add_lora,
    conv3d_names,
    default_targets,
    load_lora_state_dict,
    lora_parameter_count,
    lora_state_dict,
    merge_lora_state,
    merged_copy,
    merged_state_dict,
    remove_lora,
)
from vtok.networks.memory_format import memory_format_of, set_memory_format
from vtok.networks.trainable import apply_trainable, last_layer_weight, trainable_prefixes

SMALL = {"channels": 16, "num_res_blocks": 1}


def tiny(name: str = "CV4x8x8-360p", seed: int = 0) -> vtok.Tokenizer:
    torch.manual_seed(seed)
    return vtok.build_tokenizer(name, **SMALL).eval()


def clip(seed: int = 1, frames: int = 5, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, frames, size, size, generator=g) * 2 - 1


def randomize_adapters(network: nn.Module, seed: int = 3, std: float = 0.05) -> None:
    """B starts at zero (so adapters change nothing); give it values so merges are actually tested."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for adapter in adapters(network).values():
            adapter.up.weight.copy_(torch.randn(adapter.up.weight.shape, generator=g) * std)


def adapted(name: str = "CV4x8x8-360p", **settings) -> vtok.Tokenizer:
    network = tiny(name)
    add_lora(network, LoRASettings(**{"rank": 4, "alpha": 8.0, **settings}))
    randomize_adapters(network)
    return network


def base_state(network: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in network.state_dict().items() if ".lora." not in k}


def test_adapters_start_at_the_base_and_name_their_module() -> None:
    network, plain = tiny(), tiny()
    names = add_lora(network, LoRASettings(rank=4))
    assert names == default_targets(plain) and names and all(n.startswith("decoder.") for n in names)
    assert len(names) == sum(isinstance(m, nn.Conv3d) for m in plain.decoder.modules())
    x = clip()
    with torch.no_grad():
        assert torch.equal(network(x).reconstructions, plain(x).reconstructions)  # B is zero-initialized
    keys = set(lora_state_dict(network))
    assert keys == {f"{n}.lora.{part}.weight" for n in names for part in ("down", "up")}
    down = network.get_submodule(f"{names[0]}.lora.down")
    base = network.get_submodule(names[0])
    assert (down.kernel_size, down.stride, down.padding) == (base.kernel_size, base.stride, base.padding)
    assert lora_parameter_count(network) == sum(v.numel() for v in lora_state_dict(network).values())


@pytest.mark.parametrize("name", ["CV4x8x8-360p", "DV4x8x8-360p"])
def test_merged_weights_load_strictly_into_a_plain_network_and_reproduce_the_adapted_one(name: str) -> None:
    network = adapted(name)
    merged = merged_state_dict(network)
    plain = tiny(name, seed=5)
    assert set(merged) == set(plain.state_dict())
    plain.load_state_dict(merged, strict=True)
    x = clip()
    with torch.no_grad():
        expected, got = network(x).reconstructions, plain(x).reconstructions
    assert not torch.equal(expected, tiny(name)(x).reconstructions)  # the adapters do change the output
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)
    state = network.state_dict()
    assert merge_lora_state(state, 2.0).keys() == merged.keys()  # the pure form, as for FSDP2's full state dicts


def test_rank_zero_is_the_plain_network() -> None:
    network, plain = tiny(), tiny()
    names = apply_trainable(network, "all", LoRASettings(rank=0))
    assert names == [n for n, _ in plain.named_parameters()]
    assert not adapters(network) and not network.decoder.conv_out[1].conv3d._forward_hooks
    pairs = zip(network.state_dict().values(), plain.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    assert list(network.state_dict()) == list(plain.state_dict())
    x = clip()
    with torch.no_grad():
        assert torch.equal(network(x).reconstructions, plain(x).reconstructions)
    assert not LoRASettings(rank=0).enabled and LoRASettings(rank=0).scale == 0.0


def test_adapters_round_trip_through_safetensors_exactly(tmp_path: Path) -> None:
    settings = LoRASettings(rank=4, alpha=8.0)
    network = adapted()
    path = tmp_path / "iter_3_lora.safetensors"
    save_file(lora_state_dict(network), path, metadata=settings.metadata())
    with safe_open(path, "pt") as f:
        restored_settings = LoRASettings.from_metadata(f.metadata())
    assert restored_settings.scale == settings.scale and restored_settings.targets == settings.targets

    fresh = tiny()
    add_lora(fresh, restored_settings)
    load_lora_state_dict(fresh, load_file(path))
    restored = fresh.state_dict()
    for key, value in network.state_dict().items():
        assert torch.equal(restored[key], value), key
    x = clip()
    with torch.no_grad():
        assert torch.equal(fresh(x).reconstructions, network(x).reconstructions)

    other_rank = tiny()
    add_lora(other_rank, LoRASettings(rank=2))
    with pytest.raises(ValueError, match=r"model\.config\.lora\.rank.*wrong shape"):
        load_lora_state_dict(other_rank, load_file(path))


def test_only_adapters_train_and_the_base_stays_bit_identical() -> None:
    network = tiny()
    names = apply_trainable(network, "all", LoRASettings(rank=4, dropout=0.1))
    assert names and all(".lora." in n for n in names)
    assert {n for n, p in network.named_parameters() if p.requires_grad} == set(names)
    before, adapters_before = base_state(network), copy.deepcopy(lora_state_dict(network))
    params = [p for p in network.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)
    network.train()
    for step in range(3):
        x = clip(seed=10 + step)
        loss = (network(x).reconstructions - x).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    assert all(p.grad is None for n, p in network.named_parameters() if ".lora." not in n)
    assert all(torch.equal(v, before[k]) for k, v in base_state(network).items())
    assert any(not torch.equal(v, adapters_before[k]) for k, v in lora_state_dict(network).items())


def test_remove_lora_leaves_the_original_modules() -> None:
    network, plain = adapted(), tiny()
    conv = network.decoder.conv_out[1].conv3d
    x = clip()
    with torch.no_grad():
        merged_out = merged_copy(network)(x).reconstructions
        assert adapters(network)  # merged_copy works on a copy
        remove_lora(network)
        assert network.decoder.conv_out[1].conv3d is conv and not conv._forward_hooks and not hasattr(conv, "lora")
        assert list(network.state_dict()) == list(plain.state_dict())
        assert torch.equal(network(x).reconstructions, plain(x).reconstructions)
        again = adapted()
        remove_lora(again, merge=True)
        assert torch.allclose(again(x).reconstructions, merged_out, atol=1e-6, rtol=0)


def test_channels_last_and_bf16_autocast() -> None:
    contiguous = adapted()
    channels_last = set_memory_format(copy.deepcopy(contiguous), torch.channels_last_3d)
    adapter = adapters(channels_last)["decoder.conv_in.0.conv3d"]
    assert memory_format_of(adapter.down.weight) == torch.channels_last_3d
    fresh = set_memory_format(tiny(), torch.channels_last_3d)
    add_lora(fresh, LoRASettings(rank=4))  # adapters take the layout of the weights they adapt
    assert memory_format_of(adapters(fresh)["decoder.conv_in.0.conv3d"].down.weight) == torch.channels_last_3d
    x = clip()
    with torch.no_grad():
        expected = contiguous(x).reconstructions
        assert torch.allclose(channels_last(x).reconstructions, expected, atol=1e-5, rtol=0)
    merged = merged_state_dict(channels_last)
    assert memory_format_of(merged["decoder.conv_in.0.conv3d.weight"]) == torch.channels_last_3d

    channels_last.train().requires_grad_(False)
    for p in adapters(channels_last)["decoder.conv_out.1.conv3d"].parameters():
        p.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = channels_last(x).reconstructions
        loss = (out.float() - x).abs().mean()
    loss.backward()
    grad = adapters(channels_last)["decoder.conv_out.1.conv3d"].up.weight.grad
    assert out.dtype == torch.bfloat16 and grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_traced_merged_decoder_matches_the_adapted_network() -> None:
    network = adapted()
    z = torch.randn(1, 16, 2, 4, 4)
    with torch.no_grad():
        expected = network.decode(z)
        traced = torch.jit.trace(merged_copy(network).decoder_jit(), z, check_trace=False)
        got = traced(z)
    assert not any(".lora." in k for k in traced.state_dict())
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)


def test_decoder_only_training_keeps_every_token() -> None:
    network = tiny("DV4x8x8-360p")
    names = apply_trainable(network, "decoder")
    assert names and all(n.startswith(("decoder.", "post_quant_conv.")) for n in names)
    frozen = {k: v.clone() for k, v in network.state_dict().items() if k.startswith(("encoder.", "quant_conv."))}
    video = clip(seed=7, frames=9)
    with torch.no_grad():
        indices, codes = network.encode(video)
    decoder_before = network.decoder.conv_out[1].conv3d.weight.detach().clone()
    optimizer = torch.optim.AdamW([p for p in network.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.01)
    network.train()
    for step in range(3):
        x = clip(seed=20 + step)
        loss = (network(x).reconstructions - x).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    network.eval()
    after = network.state_dict()
    assert all(torch.equal(after[k], v) for k, v in frozen.items())
    assert not torch.equal(network.decoder.conv_out[1].conv3d.weight, decoder_before)
    with torch.no_grad():
        indices_after, codes_after = network.encode(video)
    assert torch.equal(indices_after, indices) and torch.equal(codes_after, codes)


def test_trainable_presets_and_prefixes() -> None:
    network = tiny()
    assert trainable_prefixes(network, "decoder") == ("post_quant_conv", "decoder")
    assert trainable_prefixes(network, "all") == ("",)
    names = apply_trainable(network, "encoder")
    assert names and all(n.startswith(("encoder.", "quant_conv.")) for n in names)
    names = apply_trainable(network, ["decoder.conv_out", "decoder.up.0.block.0.conv1.0.conv3d.weight"])
    assert names == [
        "decoder.up.0.block.0.conv1.0.conv3d.weight",
        "decoder.conv_out.0.conv3d.weight",
        "decoder.conv_out.0.conv3d.bias",
        "decoder.conv_out.1.conv3d.weight",
        "decoder.conv_out.1.conv3d.bias",
    ]
    assert conv3d_names(network, ["decoder.conv_out"]) == ["decoder.conv_out.0.conv3d", "decoder.conv_out.1.conv3d"]


def test_last_layer_for_the_adaptive_weight() -> None:
    network = tiny()
    apply_trainable(network, "decoder")
    assert last_layer_weight(network) is network.decoder.conv_out[1].conv3d.weight
    apply_trainable(network, "all", LoRASettings(rank=2))
    assert last_layer_weight(network) is adapters(network)["decoder.conv_out.1.conv3d"].up.weight
    encoder_only = tiny()
    apply_trainable(encoder_only, "encoder")
    with pytest.raises(ValueError, match="adaptive_weight=false"):
        last_layer_weight(encoder_only)


@pytest.mark.parametrize(
    ("trainable", "lora", "message"),
    [
        (["decoder.nope"], None, r"model\.config\.trainable: 'decoder.nope' matches no parameter"),
        (["decoder.up.10"], None, r"model\.config\.trainable: 'decoder.up.10'"),
        ([], None, r"model\.config\.trainable must be one of"),
        ("all", {"rank": 4, "targets": ("decoder.typo",)}, r"model\.config\.lora\.targets: 'decoder.typo' matches no"),
        ("all", {"rank": 4, "targets": ("decoder.norm_out",)}, r"model\.config\.lora\.targets: .* no Conv3d"),
        (
            "decoder",
            {"rank": 4, "targets": ("encoder",)},
            r"model\.config\.lora\.targets selects encoder\..*model\.config\.trainable",
        ),
    ],
)
def test_setting_errors_name_the_key(trainable, lora, message: str) -> None:
    network = tiny()
    settings = LoRASettings(**lora) if lora else None
    with pytest.raises(ValueError, match=message):
        apply_trainable(network, trainable, settings)


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"rank": -1}, "rank"),
        ({"rank": 1.5}, "rank"),
        ({"rank": 4, "alpha": 0.0}, "alpha"),
        ({"rank": 4, "dropout": 1.0}, "dropout"),
        ({"rank": 4, "targets": ()}, "targets"),
    ],
)
def test_lora_setting_errors_name_the_key(settings: dict, key: str) -> None:
    with pytest.raises(ValueError, match=rf"model\.config\.lora\.{key}"):
        LoRASettings(**settings)


def test_adding_adapters_twice_is_refused() -> None:
    network = adapted()
    with pytest.raises(ValueError, match="already has LoRA adapters"):
        add_lora(network, LoRASettings(rank=2))
