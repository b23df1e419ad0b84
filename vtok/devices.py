"""Where and in which dtype vtok computes: the default-device rule and the "auto means bf16 where it is native" rule.

Training, inference and the command line all take these from here, so a CPU without native bf16 (AMX or
AVX512-BF16), where bf16 matmuls are emulated and an order of magnitude slower, falls back to float32 everywhere.
"""

from __future__ import annotations

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def cpu_has_native_bf16() -> bool:
    """True on CPUs whose matrix units compute in bf16 (AMX or AVX512-BF16)."""
    try:
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except AttributeError:  # private helpers; older/newer torch may lack them
        return False


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 runs natively on `device`: every CUDA device here, CPUs with AMX / AVX512-BF16."""
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())


def available_devices() -> list[str]:
    """The device names torch can use in this process, e.g. ['cpu', 'cuda:0', 'cuda:1']."""
    return ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]


def resolve_device(name: str | None = None, index: int | None = None) -> torch.device:
    """The device `name` means: None or "auto" is CUDA when available (device `index`), else the CPU.

    An unknown name, or one this torch cannot use (`cuda` on a CPU-only build), raises ValueError listing the
    devices that exist."""
    if name is None or name == "auto":
        return torch.device("cuda", index or 0) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {name!r}; this machine has: {', '.join(available_devices())}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {name!r}: this torch sees no CUDA device; this machine has: {', '.join(available_devices())}"
            )
        if device.index is None:
            device = torch.device("cuda", index or 0)
        if device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {name!r}: there are {torch.cuda.device_count()} CUDA device(s); this machine "
                f"has: {', '.join(available_devices())}"
            )
    elif device.type != "cpu":
        raise ValueError(
            f"device {name!r}: vtok runs on cpu or cuda; this machine has: {', '.join(available_devices())}"
        )
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The dtype a `--dtype` value means on `device`; "auto" is bfloat16 where it is native, else float32."""
    if name == "auto":
        return torch.bfloat16 if native_bf16(device) else torch.float32
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; expected auto or one of {', '.join(DTYPES)}")
    return DTYPES[name]
