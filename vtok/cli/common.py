"""Argument helpers shared by the subcommands."""

from __future__ import annotations

import argparse

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def add_device_args(parser: argparse.ArgumentParser | argparse._ArgumentGroup, default_dtype: str) -> None:
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    choices = sorted(DTYPES) + (["auto"] if default_dtype == "auto" else [])
    helps = {
        "auto": "auto: bfloat16 on CUDA and on CPUs with native bf16 (AMX / AVX512-BF16), float32 on other "
        "CPUs, where bf16 is emulated and slower"
    }
    parser.add_argument(
        "--dtype", default=default_dtype, choices=choices, help=helps.get(default_dtype, f"(default: {default_dtype})")
    )


def resolve_device(name: str | None) -> torch.device:
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def cpu_has_native_bf16() -> bool:
    """True on CPUs whose matrix units compute in bf16 (AMX or AVX512-BF16)."""
    try:
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except AttributeError:  # private helpers; older/newer torch may lack them
        return False


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The dtype a `--dtype` value means on `device` ("auto": the fastest accurate choice)."""
    if name != "auto":
        return DTYPES[name]
    native = device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())
    return torch.bfloat16 if native else torch.float32
