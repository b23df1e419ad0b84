"""`vtok train` and `python -m vtok.train`: `[--] [--dryrun] [--plan] experiment=NAME key=value ...`, under torchrun
or alone.

    torchrun --nproc_per_node=8 -m vtok.train -- experiment=Cosmos_Tokenize1_CV4x8x8_360p_HDVILA trainer.max_iter=1000
    python -m vtok.train experiment=mock_Cosmos_Tokenize1_CV4x8x8_360p_HDVILA

The config is parsed and validated before anything is built; `${now}` in the job name is resolved once, with
rank 0's clock, so every rank writes to one job folder. The work is vtok.training.train(config). `--plan`
prints the predicted peak memory per GPU (vtok.training.memory_fit.plan_report) and exits.

Exit codes: 0 done; 1 an error, in one line (bad data or checkpoint, a failed save, too many non-finite steps,
another rank lost); 2 a bad command line; 143 stopped by SIGTERM, 130 by Ctrl-C, after saving a checkpoint at
the end of the step (rerun the same command to resume); a second Ctrl-C stops at once, saying which checkpoint
the rerun resumes from.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime

from ..config.arguments import format_config, parse_train_args, resolve_now, usage
from ..training.faults import NonFiniteStepsError
from ..training.memory_fit import plan_report
from ..training.resume import check_start
from ..training.run import PeerLostError, current_rank, train
from ..training.saving import CheckpointSaveError

ONE_LINE_ERRORS = (ValueError, OSError, KeyError, CheckpointSaveError, NonFiniteStepsError, PeerLostError)
PROG = "vtok.train"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="post-train a tokenizer (one process; use torchrun -m vtok.train for several)",
        description="Post-train a Cosmos-Tokenize1 video tokenizer from a named experiment and key=value "
        "overrides, as NVIDIA's training command does.\n\n" + usage(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dryrun", action="store_true", help="print the resolved config and exit")
    p.add_argument("--plan", action="store_true", help="print the predicted peak memory per GPU and exit")
    p.add_argument("overrides", nargs=argparse.REMAINDER, help="experiment=NAME and key=value overrides")
    p.set_defaults(
        func=lambda args: main(
            (["--dryrun"] if args.dryrun else []) + (["--plan"] if args.plan else []) + list(args.overrides)
        )
    )


def main(argv: list[str] | None = None) -> int:
    """Parse, then print (`--dryrun`) or train; returns the exit code."""
    try:
        config, flags = parse_train_args(sys.argv[1:] if argv is None else argv)
    except ValueError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    for note in flags.notes:
        print(f"{PROG}: {note}", file=sys.stderr)
    if flags.dryrun:
        print(format_config(config))
        return 0
    if flags.plan:  # for the GPU unless trainer.device=cpu; per rank of WORLD_SIZE (torchrun's) or one
        device_type = "cpu" if config.trainer.device == "cpu" else "cuda"
        try:
            print(plan_report(config, int(os.environ.get("WORLD_SIZE", "1")), device_type))
        except ONE_LINE_ERRORS as err:  # e.g. the flow term's network file is missing
            print(f"{PROG}: error: {str(err).strip(chr(39))}", file=sys.stderr)
            return 1
        return 0
    try:  # an unwritable job folder, a missing or unreadable starting checkpoint: before any process group or folder
        check_start(resolve_now(config, datetime.now()).job.folder() / "checkpoints", config.checkpoint)
    except (OSError, ValueError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    try:
        result = train(config)
    except ONE_LINE_ERRORS as err:
        print(f"{PROG}: error (rank {current_rank()}): {str(err).strip(chr(39))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        print(f"{PROG}: interrupted (rank {current_rank()}): {err}", file=sys.stderr)
        return 130
    return 128 + result.stop_signal if result.preempted else 0
