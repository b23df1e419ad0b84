"""The equivalent convolution kernels compute what Conv3d computes (values and gradients), a KernelConv3d runs what
its table names and nothing else, tracing keeps Conv3d, and `trainer.conv_kernels=auto` measures each signature
once, caches it, and picks the fastest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import small_tokenizer

from vtok.networks import conv_kernels
from vtok.networks.conv_kernels import KERNELS, KernelConv3d, candidates, set_kernel_table, signature
from vtok.networks.layers3d import CausalConv3d
from vtok.networks.lora import LoRASettings, add_lora
from vtok.training import conv_tuning
from vtok.training.conv_tuning import (
    CACHE_FILE,
    choose_kernel,
    choose_kernels,
    collect_signatures,
    step_check,
    tune_kernels,
)
from vtok.training.distributed import DistInfo
from vtok.training.layout import network_input_shape

GEOMETRIES = {  # name: (kernel, stride, padding, input [T, H, W])
    "spatial": ((1, 3, 3), (1, 1, 1), (0, 1, 1), (3, 8, 10)),
    "spatial_stride2": ((1, 3, 3), (1, 2, 2), (0, 0, 0), (2, 9, 9)),
    "temporal": ((3, 1, 1), (1, 1, 1), (0, 0, 0), (5, 4, 6)),
    "temporal_stride2": ((3, 1, 1), (2, 1, 1), (0, 0, 0), (6, 4, 4)),
    "pointwise": ((1, 1, 1), (1, 1, 1), (0, 0, 0), (3, 5, 7)),
}


def conv_and_input(geometry: str, layout: torch.memory_format, seed: int = 0) -> tuple[KernelConv3d, torch.Tensor]:
    kernel, stride, padding, (t, h, w) = GEOMETRIES[geometry]
    torch.manual_seed(seed)
    conv = KernelConv3d(6, 5, kernel, stride, padding).to(memory_format=layout)
    x = torch.randn(2, 6, t, h, w).contiguous(memory_format=layout).requires_grad_()
    return conv, x


def forward_backward(fn, conv: KernelConv3d, x: torch.Tensor) -> list[torch.Tensor]:
    x.grad = None
    conv.zero_grad(set_to_none=True)
    y = fn(conv, x)
    y.backward(torch.linspace(-1, 1, y.numel()).reshape(y.shape))
    return [y.detach(), x.grad, conv.weight.grad, conv.bias.grad]


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last_3d], ids=["contiguous", "cl3d"])
@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_every_candidate_matches_conv3d_in_values_and_gradients(geometry, layout):
    conv, x = conv_and_input(geometry, layout)
    expected = forward_backward(KERNELS["conv3d"], conv, x)
    names = candidates(conv)
    assert names[0] == "conv3d" and len(names) > 1
    for name in names[1:]:
        got = forward_backward(KERNELS[name], conv, x)
        assert got[0].shape == expected[0].shape
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=f"{name} differs from Conv3d")


def test_candidates_follow_the_geometry():
    assert candidates(conv_and_input("spatial", torch.contiguous_format)[0]) == [
        "conv3d",
        "frames_conv2d",
        "frames_conv2d_channels_last",
    ]
    assert candidates(conv_and_input("temporal_stride2", torch.contiguous_format)[0]) == ["conv3d", "time_conv2d"]
    assert len(candidates(conv_and_input("pointwise", torch.contiguous_format)[0])) == 4
    assert candidates(KernelConv3d(4, 4, (3, 3, 3), padding=1)) == ["conv3d"]
    assert candidates(KernelConv3d(4, 4, (1, 3, 3), padding=(0, 1, 1), groups=2)) == ["conv3d"]


def test_the_table_decides_per_signature_and_tracing_keeps_conv3d(monkeypatch):
    conv, x = conv_and_input("spatial", torch.contiguous_format)
    calls = []
    real = KERNELS["frames_conv2d"]
    monkeypatch.setitem(KERNELS, "frames_conv2d", lambda c, t: calls.append(t.shape) or real(c, t))
    expected = conv(x)
    conv.kernels = {signature(conv, x): "frames_conv2d"}
    torch.testing.assert_close(conv(x), expected, rtol=1e-5, atol=1e-5)
    assert calls == [x.shape]
    with torch.no_grad():  # another signature (no backward follows): Conv3d
        conv(x)
    conv(x[:, :, :2])  # another shape: Conv3d
    assert calls == [x.shape]
    traced = torch.jit.trace(conv, x.detach())
    assert calls == [x.shape], "tracing records Conv3d, so exported files stay what they were"
    torch.testing.assert_close(traced(x[:, :, :2].detach()), conv(x[:, :, :2]).detach())


def test_choose_kernel_needs_a_clear_win_over_conv3d():
    assert choose_kernel({"conv3d": 1.0, "frames_conv2d": 0.98}) == "conv3d"
    assert choose_kernel({"conv3d": 1.0, "frames_conv2d": 0.9, "frames_conv2d_channels_last": 0.8}) == (
        "frames_conv2d_channels_last"
    )
    assert choose_kernel({"conv3d": 0.5, "time_conv2d": 0.9}) == "conv3d"


SHAPE = (1, 3, 5, 32, 32)


def seeded(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return small_tokenizer(name)


def test_tuning_covers_every_signature_the_tuned_network_meets(tmp_path):
    network = small_tokenizer("CV4x8x8-360p").train()
    before = {k: v.clone() for k, v in network.state_dict().items()}
    rng = torch.get_rng_state()
    plain = collect_signatures(network, SHAPE, autocast=False)
    assert plain and all(sig.grad and sig.shape[0] == 1 for sig in plain)
    assert all(p.requires_grad for p in network.parameters()), "collecting leaves requires_grad as it was"
    path = tmp_path / CACHE_FILE
    table, measured, cached = tune_kernels(network, SHAPE, False, path)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, before[k]) for k, v in network.state_dict().items())
    assert all(p.grad is None for p in network.parameters())
    (entries,) = json.loads(path.read_text()).values()
    tunable = [sig for sig, conv in plain.items() if len(candidates(conv)) > 1]
    assert cached == 0 and len(entries) == measured >= len(tunable)
    for entry in entries.values():
        assert entry["kernel"] == choose_kernel(entry["ms"]) and all(ms > 0 for ms in entry["ms"].values())
    assert {repr(sig): name for sig, name in table.items()} == {
        key: e["kernel"] for key, e in entries.items() if e["kernel"] != "conv3d"
    }
    set_kernel_table(network, table)
    met = collect_signatures(network, SHAPE, autocast=False)  # with the table: its kernels' output layouts
    missing = [sig for sig, conv in met.items() if len(candidates(conv)) > 1 and repr(sig) not in entries]
    assert not missing, "a signature of the tuned network was never timed"


def test_timings_are_cached_per_signature_and_a_stored_answer_is_used(tmp_path):
    conv = CausalConv3d(8, 8, (1, 3, 3), padding=1)
    path = tmp_path / CACHE_FILE
    table, measured, cached = tune_kernels(conv, (1, 8, 3, 16, 16), False, path)
    assert (measured, cached) == (1, 0)
    cache = json.loads(path.read_text())
    (entries,) = cache.values()
    (entry,) = entries.values()
    assert set(entry["ms"]) == set(candidates(conv.conv3d))
    entry["kernel"] = "frames_conv2d"
    path.write_text(json.dumps(cache))
    again, measured, cached = tune_kernels(conv, (1, 8, 3, 16, 16), False, path)
    assert (measured, cached) == (0, 1) and list(again.values()) == ["frames_conv2d"]
    tune_kernels(conv, (1, 8, 5, 16, 16), False, path)  # another shape: one more entry, the first one kept
    (entries,) = json.loads(path.read_text()).values()
    assert len(entries) == 2 and "frames_conv2d" in [e["kernel"] for e in entries.values()]


def count_kernel_calls(monkeypatch) -> dict[str, int]:
    """Wrap every alternative kernel so a test can see that it ran (the wrapped kernel is the real one)."""
    calls = dict.fromkeys(KERNELS, 0)
    for name, kernel in list(KERNELS.items()):

        def counted(conv, x, name=name, kernel=kernel):
            calls[name] += 1
            return kernel(conv, x)

        monkeypatch.setitem(KERNELS, name, counted)
    return calls


def prefer_2d_kernels(monkeypatch) -> None:
    """Deterministic kernel timings in which every 2D kernel beats Conv3d (for tests of what follows a timing)."""

    def fake_timings(names, conv, sig):
        return {name: 1.0 if name == "conv3d" else 0.5 + 0.01 * i for i, name in enumerate(names)}

    monkeypatch.setattr(conv_tuning, "time_kernels", fake_timings)


def test_a_tuned_network_trains_like_the_plain_one_and_saves_the_same_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("VTOK_CACHE_DIR", str(tmp_path))
    shape = (1, 3, 9, 32, 32)
    plain, tuned = (seeded("CV8x8x8-720p").train() for _ in range(2))  # continuous: no FSQ rounding to flip
    table = choose_kernels("auto", tuned, {}, shape, torch.device("cpu"), DistInfo(), autocast=False)
    forced = {sig: candidates(conv)[-1] for sig, conv in collect_signatures(tuned, shape, False).items()}
    set_kernel_table(tuned, forced)  # every tunable conv on an alternative kernel, whatever won the timing
    assert isinstance(table, dict) and any(name != "conv3d" for name in forced.values())
    x = torch.rand(shape) * 2 - 1
    calls = count_kernel_calls(monkeypatch)
    for network in (plain, tuned):
        torch.manual_seed(3)
        (network(x).reconstructions - x).abs().mean().backward()
    assert calls["frames_conv2d_channels_last"] > 0 and calls["time_conv2d"] > 0
    grads = {n: p.grad for n, p in plain.named_parameters()}
    for name, p in tuned.named_parameters():
        torch.testing.assert_close(p.grad, grads[name], rtol=1e-4, atol=1e-5, msg=name)
    assert list(tuned.state_dict()) == list(plain.state_dict())


def test_lora_hooks_still_apply_on_a_tuned_conv(monkeypatch):
    network = small_tokenizer("CV4x8x8-360p").eval()
    add_lora(network, LoRASettings(rank=2, alpha=2.0, targets=("decoder",)))
    for p in network.parameters():
        if p.dim() == 5 and p.shape[1] == 2:
            torch.nn.init.normal_(p, std=0.1)  # non-zero up-projections, so the adapters change the output
    x = torch.rand(SHAPE) * 2 - 1
    expected = network(x).reconstructions
    forced = {sig: candidates(conv)[-1] for sig, conv in collect_signatures(network, SHAPE, False).items()}
    set_kernel_table(network, forced)
    calls = count_kernel_calls(monkeypatch)
    torch.testing.assert_close(network(x).reconstructions, expected, rtol=1e-4, atol=1e-5)
    assert calls["frames_conv2d_channels_last"] > 0


def test_explicit_conv3d_and_cuda_set_no_table(tmp_path, monkeypatch):
    monkeypatch.setenv("VTOK_CACHE_DIR", str(tmp_path))
    network = small_tokenizer("CV4x8x8-360p").train()
    assert choose_kernels("conv3d", network, {}, SHAPE, torch.device("cpu"), DistInfo(), False) == {}
    assert choose_kernels("auto", network, {}, SHAPE, torch.device("cuda"), DistInfo(), False) == {}
    assert all(conv.kernels is None for conv in conv_kernels.kernel_convs(network))
    assert not (tmp_path / CACHE_FILE).exists()


def test_the_table_is_kept_only_when_a_whole_step_is_faster_and_that_verdict_is_cached(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("VTOK_CACHE_DIR", str(tmp_path))
    prefer_2d_kernels(monkeypatch)  # a non-empty table, whatever this machine's convs time at
    network = small_tokenizer("CV4x8x8-360p").train()
    config = network.config.to_dict()
    table, _, _ = tune_kernels(network, SHAPE, False, tmp_path / CACHE_FILE)
    assert table and set(table.values()) <= {"frames_conv2d", "time_conv2d"}
    rng = torch.get_rng_state()
    use, how = step_check(network, config, SHAPE, False, table, tmp_path / CACHE_FILE)
    assert torch.equal(torch.get_rng_state(), rng), "the timed steps leave the run's random stream as it was"
    cache = json.loads((tmp_path / CACHE_FILE).read_text())
    (step_key,) = [k for k in cache if k.startswith("steps ")]
    seconds = cache[step_key]["seconds"]
    assert cache[step_key]["use_table"] == use == (seconds["table"] < 0.97 * seconds["conv3d"]) and "step" in how

    for verdict in (False, True):  # a stored verdict wins over what the step would time now
        cache[step_key]["use_table"] = verdict
        (tmp_path / CACHE_FILE).write_text(json.dumps(cache))
        caplog.clear()
        with caplog.at_level("INFO", logger="vtok.training.conv_tuning"):
            chosen = choose_kernels("auto", network, config, SHAPE, torch.device("cpu"), DistInfo(), False)
        assert chosen == (table if verdict else {}) and "step check cached" in caplog.text
        assert all(conv.kernels == chosen for conv in conv_kernels.kernel_convs(network))
    other = choose_kernels(
        "auto", network, {**config, "activation_checkpointing": True}, SHAPE, torch.device("cpu"), DistInfo(), False
    )
    assert (
        isinstance(other, dict)
        and len([k for k in json.loads((tmp_path / CACHE_FILE).read_text()) if k.startswith("steps ")]) == 2
    ), "another setup: its own step check"


def test_bf16_pure_and_frozen_weights_are_their_own_cases(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("VTOK_CACHE_DIR", str(tmp_path))
    network = small_tokenizer("CV4x8x8-360p").train()
    with caplog.at_level("INFO", logger="vtok.training.conv_tuning"):
        assert (
            choose_kernels("auto", network, {}, SHAPE, torch.device("cpu"), DistInfo(), False, skip="bf16_pure") == {}
        )
    assert "Conv3d everywhere (bf16_pure)" in caplog.text and not (tmp_path / CACHE_FILE).exists()
    conv, x = conv_and_input("spatial", torch.contiguous_format)
    trained = signature(conv, x)
    conv.weight.requires_grad_(False)
    assert signature(conv, x) != trained and not signature(conv, x).weight_grad


def test_the_network_input_shape_follows_the_consistency_windows():
    assert network_input_shape((2, 3, 33, 64, 96)) == (2, 3, 33, 64, 96)
    assert network_input_shape((2, 3, 33, 64, 96), 17, 8) == (6, 3, 17, 64, 96)  # windows at 0, 8, 16


def test_the_benchmark_runs_and_prints_every_variant_against_the_plain_step():
    root = Path(__file__).resolve().parents[1]
    args = ["--channels", "16", "--frames", "9", "--size", "32", "32", "--rounds", "1"]
    out = subprocess.run(
        [sys.executable, str(root / "bench" / "train_kernels.py"), *args], capture_output=True, text=True, check=True
    ).stdout
    rows = [line.split() for line in out.splitlines() if line.startswith("CV8x8x8-720p")]
    assert [" ".join(r[1:4]) for r in rows] == [
        "contiguous + conv3d",
        "contiguous + auto",
        "channels_last_3d + conv3d",
        "channels_last_3d + auto",
    ]
    assert float(rows[0][6]) == 1.0 and all(float(r[4]) > 0 for r in rows)
