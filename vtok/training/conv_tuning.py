"""The convolution kernels of a training run, chosen by timing them on this machine (docs/design.md#kernels).

`trainer.conv_kernels=auto` collects the signatures the network's convolutions meet in a forward at the training
clip's shape, times a forward and backward of every kernel that computes each one
(`vtok.networks.conv_kernels.candidates`) on random tensors of that signature, and builds the table of winners,
pass by pass (a winner changes the layout its successor sees). Convs timed alone miss what happens between them,
so the table is kept only if a whole training step with it is faster than with Conv3d everywhere. Timings are
cached per machine, thread count and torch version in `$VTOK_CACHE_DIR/conv_kernels.json`, per signature (another
network or clip size measures only what is new) and per network, shape and table for the step check. Rank 0
decides for every rank.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..networks.conv_kernels import KERNELS, KernelConv3d, Signature, candidates, kernel_convs, set_kernel_table
from ..networks.conv_kernels import signature as conv_signature
from ..networks.memory_format import memory_format_of, network_memory_format
from .distributed import DistInfo, broadcast_object
from .layout import cache_dir, cpu_name, l1_step, layout_key, read_cache, update_cache

log = logging.getLogger(__name__)

CACHE_FILE = "conv_kernels.json"
MARGIN = 0.97  # another kernel replaces Conv3d only when it takes less than 97% of its time (timing noise)
REPEATS = 3  # timed runs per kernel, after one warm-up; the fastest counts
STEP_REPEATS = 3  # timed whole steps per variant in the step check
MAX_PASSES = 4  # forwards that collect signatures (each new kernel can change the next conv's input layout)


def machine_key() -> str:
    """What kernel timings depend on besides the signature: CPU model, threads and torch."""
    text = json.dumps([cpu_name(), torch.get_num_threads(), torch.__version__])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def collect_signatures(network: nn.Module, shape: tuple[int, ...], autocast: bool) -> dict[Signature, KernelConv3d]:
    """{signature: one conv that has it} over one forward at `shape` with grad mode on (so the network's kernel
    table applies, as in training) but no graph (every parameter's requires_grad off for it)."""
    found: dict[Signature, KernelConv3d] = {}

    def record(conv: KernelConv3d, args: tuple) -> None:
        found.setdefault(conv_signature(conv, args[0], weight_grad=trains[id(conv.weight)]), conv)

    hooks = [conv.register_forward_pre_hook(record) for conv in kernel_convs(network)]
    flags = [(p, p.requires_grad) for p in network.parameters()]
    trains = {id(p): flag for p, flag in flags}
    layout = network_memory_format(network)
    device = flags[0][0].device
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        x = torch.zeros(shape, device=device).contiguous(memory_format=layout)
        with torch.enable_grad(), torch.random.fork_rng(devices=[]):
            with torch.autocast(device.type, torch.bfloat16, enabled=autocast):
                network(x)
    finally:
        for hook in hooks:
            hook.remove()
        for p, flag in flags:
            p.requires_grad_(flag)
    return found


def fastest_of(runs: dict[str, Callable[[], None]], repeats: int = REPEATS) -> dict[str, float]:
    """{name: seconds of its fastest run}: one warm-up each, then `repeats` rounds taking every run in turn, so a
    change in the machine's speed (other tenants, clocks) hits them alike."""
    best = dict.fromkeys(runs, float("inf"))
    for attempt in range(repeats + 1):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            if attempt:
                best[name] = min(best[name], time.perf_counter() - start)
    return best


def time_kernels(names: list[str], conv: KernelConv3d, sig: Signature) -> dict[str, float]:
    """{kernel: seconds of its fastest forward+backward at `sig`}, on random tensors and a probe conv of the same
    geometry (the network's weights and gradients are not touched)."""
    probe = nn.Conv3d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None
    ).to(device=sig.device, dtype=conv.weight.dtype, memory_format=memory_format_of(conv.weight))
    probe.weight.requires_grad_(sig.weight_grad)
    x = torch.empty_strided(sig.shape, sig.strides, dtype=getattr(torch, sig.dtype), device=sig.device)
    x = x.normal_().requires_grad_()

    def run(name: str) -> Callable[[], None]:
        def forward_backward() -> None:
            with torch.autocast(sig.device, torch.bfloat16, enabled=sig.autocast):
                y = KERNELS[name](probe, x)
            y.backward(torch.ones_like(y))
            if sig.device == "cuda":
                torch.cuda.synchronize()
            x.grad = None
            probe.zero_grad(set_to_none=True)

        return forward_backward

    return fastest_of({name: run(name) for name in names})


def choose_kernel(seconds: dict[str, float]) -> str:
    """The fastest kernel, unless it is within MARGIN of Conv3d's time (then Conv3d)."""
    best = min(seconds, key=seconds.get)
    return best if seconds[best] < MARGIN * seconds["conv3d"] else "conv3d"


def tune_kernels(network: nn.Module, shape: tuple[int, ...], autocast: bool, path: Path) -> tuple[dict, int, int]:
    """(table of the signatures where another kernel beat Conv3d, signatures measured now, signatures read from the
    cache at `path`). A 2D kernel hands the next conv a frames-major input, a signature of its own, so the table
    grows pass by pass (the network runs with the table so far) until a forward meets no new signature."""
    key = machine_key()
    cache = read_cache(path)
    known = cache.get(key) if isinstance(cache.get(key), dict) else {}
    decided: dict[Signature, str] = {}
    measured: dict[str, dict] = {}
    cached = 0
    with torch.random.fork_rng(devices=[]):
        for _ in range(MAX_PASSES):
            set_kernel_table(network, {sig: name for sig, name in decided.items() if name != "conv3d"})
            new = {s: c for s, c in collect_signatures(network, shape, autocast).items() if s not in decided}
            if not new:
                break
            for sig, conv in new.items():
                names = candidates(conv)
                entry = known.get(repr(sig))
                if len(names) == 1:
                    decided[sig] = "conv3d"
                elif isinstance(entry, dict) and entry.get("kernel") in names:
                    decided[sig], cached = entry["kernel"], cached + 1
                else:
                    seconds = time_kernels(names, conv, sig)
                    decided[sig] = choose_kernel(seconds)
                    ms = {n: t * 1e3 for n, t in seconds.items()}  # unrounded: the choice reads back
                    measured[repr(sig)] = {"kernel": decided[sig], "ms": ms}
        else:
            log.warning("conv kernels: still new shapes after %d passes; those run Conv3d", MAX_PASSES)
    set_kernel_table(network, None)
    if measured:
        update_cache(path, key, lambda old: {**(old if isinstance(old, dict) else {}), **measured}, "conv timings")
    return {sig: name for sig, name in decided.items() if name != "conv3d"}, len(measured), cached


def step_check(
    network: nn.Module, network_config: dict[str, Any], shape: tuple[int, ...], autocast: bool, table: dict, path: Path
) -> tuple[bool, str]:
    """(whether a training step with `table` beats Conv3d everywhere by MARGIN, how that was decided): timed once
    per machine, network, shape and precision (STEP_REPEATS interleaved steps each after a warm-up), then read
    from the cache."""
    layout = network_memory_format(network)
    trainable = sum(p.numel() for p in network.parameters() if p.requires_grad)  # frozen parts: less backward
    what = json.dumps([str(layout), trainable, sorted(map(repr, table.items()))])
    key = f"steps {layout_key(network_config, shape, autocast)} {hashlib.sha256(what.encode()).hexdigest()[:12]}"
    entry = read_cache(path).get(key)
    if isinstance(entry, dict) and isinstance(entry.get("use_table"), bool):
        return entry["use_table"], f"step check cached in {path}"
    device = next(network.parameters()).device

    def run(chosen: dict | None) -> Callable[[], None]:
        def step() -> None:
            set_kernel_table(network, chosen)
            l1_step(network, x, autocast)
            for p in network.parameters():
                p.grad = None

        return step

    with torch.random.fork_rng(devices=[]):  # the run's own random stream is left as it was
        x = torch.rand(shape, device=device).mul_(2).sub_(1).contiguous(memory_format=layout)
        seconds = fastest_of({"conv3d": run(None), "table": run(table)}, STEP_REPEATS)
    use_table = seconds["table"] < MARGIN * seconds["conv3d"]
    verdict = {"use_table": use_table, "seconds": seconds, "shape": list(shape)}
    update_cache(path, key, lambda _: verdict, "the conv kernel verdict")
    return use_table, f"step {seconds['table']:.3g} s with the table, {seconds['conv3d']:.3g} s with Conv3d"


def choose_kernels(
    setting: str,
    network: nn.Module,
    network_config: dict[str, Any],
    shape: tuple[int, ...],
    device: torch.device,
    info: DistInfo,
    autocast: bool,
    skip: str = "",
) -> dict[Signature, str]:
    """Set the network's kernel table as `trainer.conv_kernels` asks ("auto": see the module docstring; "conv3d":
    none), log what was chosen, and return the table. `network_config` is everything else the step check's
    verdict depends on (network, precision, checkpointing); `skip`: a reason to run Conv3d anyway (bf16_pure:
    the network is cast to bf16 after this, so signatures timed now would never match)."""
    reason = "trainer.conv_kernels" if setting != "auto" else device.type if device.type != "cpu" else skip
    if reason:
        set_kernel_table(network, None)
        log.info("conv kernels: Conv3d everywhere (%s)", reason)
        return {}
    path = cache_dir() / CACHE_FILE
    result = None
    if info.rank == 0:
        table, measured, cached = tune_kernels(network, shape, autocast, path)
        use, how = step_check(network, network_config, shape, autocast, table, path) if table else (False, "")
        result = (table if use else {}, measured, cached, how)
    table, measured, cached, how = broadcast_object(result, info)
    set_kernel_table(network, table)
    counts = sorted(Counter(table.values()).items())
    chosen = ", ".join(f"{name} for {n}" for name, n in counts) or "Conv3d for every shape"
    log.info("conv kernels: %s (%d shapes measured, %d from %s%s)", chosen, measured, cached, path, how and "; " + how)
    return table
