"""`python -m vtok.train [--] [--dryrun] experiment=NAME key=value ...`, under torchrun or alone (spec 4.1).

    torchrun --nproc_per_node=8 -m vtok.train -- experiment=Cosmos_Tokenize1_CV4x8x8_360p_HDVILA trainer.max_iter=1000
    python -m vtok.train experiment=mock_Cosmos_Tokenize1_CV4x8x8_360p_HDVILA

The config is parsed and validated before anything is built; `${now}` in the job name is resolved once, with
rank 0's clock, so every rank writes to one job folder.
"""

from __future__ import annotations

import sys
from datetime import datetime

from .config import format_config, parse_train_args, resolve_now
from .training.distributed import broadcast_object, close_distributed, init_distributed
from .training.trainer import Trainer


def run(argv: list[str]) -> int:
    """Parse, then print (`--dryrun`) or train; returns the exit code."""
    try:
        config, flags = parse_train_args(argv)
    except ValueError as err:
        print(f"vtok.train: error: {err}", file=sys.stderr)
        return 2
    for note in flags.notes:
        print(f"vtok.train: {note}", file=sys.stderr)
    if flags.dryrun:
        print(format_config(config))
        return 0
    info = init_distributed(config.trainer)
    try:
        config = resolve_now(config, broadcast_object(datetime.now(), info))
        Trainer(config, info).train()
    except (ValueError, FileNotFoundError, KeyError) as err:
        print(f"vtok.train: error (rank {info.rank}): {str(err).strip(chr(39))}", file=sys.stderr)
        return 1
    finally:
        close_distributed()
    return 0


def main() -> None:
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
