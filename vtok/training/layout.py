"""The training memory layout, chosen by measuring this machine (docs/design.md#precision).

Which layout trains faster depends on the machine: on a 2-core AVX2 CPU a full-size CV8x8x8 step (9x128x128, fp32)
took 4.57 s contiguous and 5.61 s in channels_last_3d, while inference there is fastest in channels_last_3d. So
`trainer.channels_last=auto` times one forward and backward of the configured network at the training clip's shape
in both layouts, once per machine, network and shape, and keeps the answer in a small JSON cache; rank 0 decides for
every rank (DDP's gradient buckets need one layout everywhere). CUDA takes channels_last_3d, which cuDNN prefers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.config import LoaderConfig
from ..data.sources import ASPECT_RATIOS, crop_size, parse_dataset_name
from ..io.atomic import atomic_path
from ..losses.consistency import window_count
from ..networks.memory_format import set_memory_format
from .distributed import DistInfo, broadcast_object

log = logging.getLogger(__name__)

LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last_3d": torch.channels_last_3d}
CACHE_FILE = "train_layouts.json"


def cache_dir() -> Path:
    """`$VTOK_CACHE_DIR`, else `~/.cache/vtok`."""
    return Path(os.environ.get("VTOK_CACHE_DIR") or Path.home() / ".cache" / "vtok")


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one), so a cache copied to another machine misses."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def layout_key(network_config: dict[str, Any], shape: tuple[int, ...], autocast: bool) -> str:
    """What the winner depends on: machine, threads, torch, network, clip shape and precision."""
    text = json.dumps(
        [cpu_name(), torch.get_num_threads(), torch.__version__, network_config, list(shape), autocast], sort_keys=True
    )
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def l1_step(network: nn.Module, x: torch.Tensor, autocast: bool) -> None:
    """One forward, L1 against the input and backward: the training step that layout and kernel timings measure."""
    with torch.autocast(x.device.type, torch.bfloat16, enabled=autocast):
        out = network(x).reconstructions
    (out.float() - x).abs().mean().backward()


def time_step(network: nn.Module, shape: tuple[int, ...], layout: torch.memory_format, autocast: bool) -> float:
    """Seconds of the faster of two forward+L1+backward passes after a warm-up, in `layout` (left in it)."""
    set_memory_format(network, layout)
    x = torch.rand(shape).mul_(2).sub_(1).contiguous(memory_format=layout)
    best = float("inf")
    for attempt in range(3):
        start = time.perf_counter()
        l1_step(network, x, autocast)
        if attempt:
            best = min(best, time.perf_counter() - start)
    for p in network.parameters():
        p.grad = None
    return best


def measure_layouts(network: nn.Module, shape: tuple[int, ...], autocast: bool) -> dict[str, float]:
    """{layout: seconds per step}; the network's RNG draws (VAE sampling) and gradients are left as they were."""
    with torch.random.fork_rng(devices=[]):
        return {name: time_step(network, shape, layout, autocast) for name, layout in LAYOUTS.items()}


def read_cache(path: Path) -> dict[str, Any]:
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return cached if isinstance(cached, dict) else {}


def cached_choice(
    network: nn.Module, network_config: dict[str, Any], shape: tuple[int, ...], autocast: bool
) -> tuple[str, str]:
    """(layout name, how it was decided) on this process: the cache's answer, else a measurement it then stores."""
    path = cache_dir() / CACHE_FILE
    key = layout_key(network_config, shape, autocast)
    entry = read_cache(path).get(key)
    if isinstance(entry, dict) and entry.get("layout") in LAYOUTS:
        return entry["layout"], f"cached in {path}"
    seconds = measure_layouts(network, shape, autocast)
    layout = min(seconds, key=seconds.get)
    how = "measured " + ", ".join(f"{name} {s:.3g} s" for name, s in seconds.items()) + " per step"
    entry = {"layout": layout, "seconds": seconds, "shape": list(shape), "cpu": cpu_name()}
    update_cache(path, key, lambda _: entry, "the training layout")
    return layout, how


def update_cache(path: Path, key: str, update: Callable[[Any], Any], what: str) -> None:
    """Set the JSON cache's `key` to `update(its current value)`, atomically; a failure only warns (naming `what`):
    it costs a measurement next time, nothing else."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        cache = read_cache(path)
        cache[key] = update(cache.get(key))
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(cache, indent=1, sort_keys=True) + "\n")
    except OSError as err:
        log.warning("could not cache %s in %s (%s); the next run measures again", what, path, err)


def training_clip_shape(loader: LoaderConfig) -> tuple[int, int, int, int, int]:
    """`[B, 3, T, H, W]` of a training batch in its first aspect ratio (the one the layout is timed on)."""
    dataset = loader.dataset
    width, height = crop_size(dataset, parse_dataset_name(dataset.name).resolution, ASPECT_RATIOS[0])
    return (loader.batch_size, 3, dataset.num_video_frames, height, width)


def network_input_shape(clip: tuple[int, ...], consistency_frames: int = 0, consistency_step: int = 0) -> tuple:
    """The shape the network sees for a training clip: the clip, or its overlapping windows stacked in the batch
    when the video-consistency term is on (`consistency_frames` > 0), as `TokenizerLoss.network_input` does."""
    if consistency_frames <= 0:
        return tuple(clip)
    b, c, t, h, w = clip
    return (b * window_count(t, consistency_frames, consistency_step), c, consistency_frames, h, w)


def choose_layout(
    setting: bool | str,
    network: nn.Module,
    network_config: dict[str, Any],
    shape: tuple[int, ...],
    device: torch.device,
    info: DistInfo,
    autocast: bool = False,
) -> torch.memory_format:
    """The layout `trainer.channels_last` asks for (True, False, or "auto": see the module docstring); the network
    is left in it and the choice is logged."""
    if setting != "auto":
        layout, how = ("channels_last_3d" if setting else "contiguous"), "trainer.channels_last"
    elif device.type == "cuda":
        layout, how = "channels_last_3d", "the CUDA default"
    elif device.type != "cpu":
        layout, how = "contiguous", f"the {device.type} default"
    else:
        layout, how = cached_choice(network, network_config, shape, autocast) if info.rank == 0 else (None, "")
        layout, how = broadcast_object((layout, how), info)
    set_memory_format(network, LAYOUTS[layout])
    log.info("training layout: %s (%s)", layout, how)
    return LAYOUTS[layout]
