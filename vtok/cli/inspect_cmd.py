"""`vtok inspect`: what a checkpoint holds and which model vtok reads it as."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from ..checkpoint.load import infer_model_name, read_checkpoint


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "inspect",
        help="describe a checkpoint file and the model it fits",
        description="Print a checkpoint's kind, parts, dtypes, iteration and inferred model.",
    )
    p.add_argument("checkpoint", type=Path, help="a .pt or .jit file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    contents = read_checkpoint(args.checkpoint, ema=False)
    dtypes = Counter(str(v.dtype).removeprefix("torch.") for v in contents.state.values())
    print(f"file:     {contents.path}")
    print(f"format:   {'TorchScript' if contents.kind == 'jit' else 'training checkpoint (torch.save)'}")
    print(f"parts:    {', '.join(sorted(contents.parts))}")
    print(f"tensors:  {len(contents.state)} ({', '.join(f'{n} {d}' for d, n in dtypes.most_common())})")
    for key in ("iteration", "has_ema", "top_level_keys"):
        if key in contents.info:
            print(f"{key + ':':<9} {contents.info[key]}")
    name, widths = (contents.name, contents.overrides) if contents.name else infer_model_name(contents)
    print(f"model:    {name}" + (f" with {widths}" if widths else ""))
    return 0
