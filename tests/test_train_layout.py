"""`trainer.channels_last=auto` times a training step in both layouts once, keeps the faster, and reuses that answer
from its cache; explicit settings are taken as given."""

from __future__ import annotations

import json

import torch
from conftest import small_tokenizer

from vtok.networks.memory_format import memory_format_of
from vtok.training.distributed import DistInfo
from vtok.training.layout import CACHE_FILE, LAYOUTS, choose_layout, measure_layouts

SHAPE = (1, 3, 5, 32, 32)


def first_conv_weight(network: torch.nn.Module) -> torch.Tensor:
    return next(p for p in network.parameters() if p.dim() == 5)


def test_auto_measures_once_keeps_the_faster_and_then_reads_the_cache(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("VTOK_CACHE_DIR", str(tmp_path))
    network = small_tokenizer("CV4x8x8-360p").train()
    config = network.config.to_dict()
    before = {k: v.clone() for k, v in network.state_dict().items()}
    rng = torch.get_rng_state()
    with caplog.at_level("INFO", logger="vtok.training.layout"):
        chosen = choose_layout("auto", network, config, SHAPE, torch.device("cpu"), DistInfo())
    assert torch.equal(torch.get_rng_state(), rng), "the timed steps leave the RNG as it was"
    assert all(p.grad is None for p in network.parameters())
    assert all(torch.equal(v, before[k]) for k, v in network.state_dict().items())
    assert memory_format_of(first_conv_weight(network)) == chosen
    cache = json.loads((tmp_path / CACHE_FILE).read_text())
    (entry,) = cache.values()
    assert set(entry["seconds"]) == set(LAYOUTS) and all(s > 0 for s in entry["seconds"].values())
    assert LAYOUTS[min(entry["seconds"], key=entry["seconds"].get)] == chosen
    assert "measured" in caplog.text

    entry["layout"] = next(name for name, layout in LAYOUTS.items() if layout != chosen)  # a stored answer wins
    (tmp_path / CACHE_FILE).write_text(json.dumps(cache))
    caplog.clear()
    with caplog.at_level("INFO", logger="vtok.training.layout"):
        again = choose_layout("auto", network, config, SHAPE, torch.device("cpu"), DistInfo())
    assert again == LAYOUTS[entry["layout"]] and "cached in" in caplog.text
    other_shape = choose_layout("auto", network, config, (1, 3, 9, 32, 32), torch.device("cpu"), DistInfo())
    assert len(json.loads((tmp_path / CACHE_FILE).read_text())) == 2 and other_shape in LAYOUTS.values()


def test_explicit_settings_and_cuda_need_no_measurement(tmp_path, monkeypatch):
    monkeypatch.setenv("VTOK_CACHE_DIR", str(tmp_path))
    network = small_tokenizer("DV4x8x8-360p")
    config = network.config.to_dict()
    for setting, expected in ((True, torch.channels_last_3d), (False, torch.contiguous_format)):
        assert choose_layout(setting, network, config, SHAPE, torch.device("cpu"), DistInfo()) == expected
        assert memory_format_of(first_conv_weight(network)) == expected
    assert choose_layout("auto", network, config, SHAPE, torch.device("cuda"), DistInfo()) == torch.channels_last_3d
    assert not (tmp_path / CACHE_FILE).exists()


def test_the_layouts_give_the_same_gradients():
    network = small_tokenizer("CV4x8x8-360p").train()
    seconds = measure_layouts(network, SHAPE, autocast=False)
    assert set(seconds) == set(LAYOUTS)
    x = torch.rand(SHAPE) * 2 - 1
    grads = []
    for layout in LAYOUTS.values():
        choose_layout(layout is torch.channels_last_3d, network, {}, SHAPE, torch.device("cpu"), DistInfo())
        torch.manual_seed(0)
        (network(x.contiguous(memory_format=layout)).reconstructions - x).abs().mean().backward()
        grads.append([p.grad.clone() for p in network.parameters()])
        network.zero_grad(set_to_none=True)
    assert all(torch.allclose(a, b, atol=1e-5, rtol=1e-4) for a, b in zip(*grads))
