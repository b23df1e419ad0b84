"""The `--device` and `--dtype` flags; what they mean is vtok.devices' rule, shared with training."""

from __future__ import annotations

import argparse

from ..devices import DTYPES


def add_device_args(parser: argparse.ArgumentParser | argparse._ArgumentGroup, default_dtype: str) -> None:
    parser.add_argument(
        "--device", default=None, help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda when available, else cpu)"
    )
    choices = sorted(DTYPES) + (["auto"] if default_dtype == "auto" else [])
    helps = {
        "auto": "auto: bfloat16 on CUDA and on CPUs with native bf16 (AMX / AVX512-BF16), float32 on other "
        "CPUs, where bf16 is emulated and slower"
    }
    parser.add_argument(
        "--dtype", default=default_dtype, choices=choices, help=helps.get(default_dtype, f"(default: {default_dtype})")
    )
