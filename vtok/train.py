"""`python -m vtok.train [--] [--dryrun] experiment=NAME key=value ...`, under torchrun or alone (spec 4.1).

    torchrun --nproc_per_node=8 -m vtok.train -- experiment=Cosmos_Tokenize1_CV4x8x8_360p_HDVILA trainer.max_iter=1000
    python -m vtok.train experiment=mock_Cosmos_Tokenize1_CV4x8x8_360p_HDVILA

The config is parsed and validated before anything is built; `${now}` in the job name is resolved once, with
rank 0's clock, so every rank writes to one job folder.

Exit codes: 0 done; 1 an error, in one line (bad data or checkpoint, a failed save, too many non-finite steps,
another rank lost); 2 a bad command line; 143 stopped by SIGTERM after saving a checkpoint (rerun the same
command to resume).
"""

from __future__ import annotations

import sys
from datetime import datetime

from .config import format_config, parse_train_args, resolve_now
from .training.checkpointing import CheckpointSaveError, check_start
from .training.distributed import broadcast_object, close_distributed, init_distributed, is_peer_failure
from .training.faults import PREEMPTED_EXIT_CODE, NonFiniteStepsError
from .training.trainer import Trainer

ONE_LINE_ERRORS = (ValueError, FileNotFoundError, KeyError, CheckpointSaveError, NonFiniteStepsError)


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
    try:
        check_start(resolve_now(config, datetime.now()).job.folder() / "checkpoints", config.checkpoint)
    except FileNotFoundError as err:
        print(f"vtok.train: error: {err}", file=sys.stderr)
        return 1
    info = init_distributed(config.trainer)
    trainer = None
    try:
        config = resolve_now(config, broadcast_object(datetime.now(), info))
        trainer = Trainer(config, info)
        trainer.train()
        preempted = trainer.preempted
    except ONE_LINE_ERRORS as err:
        print(f"vtok.train: error (rank {info.rank}): {str(err).strip(chr(39))}", file=sys.stderr)
        return 1
    except RuntimeError as err:
        if not (info.distributed and is_peer_failure(err)):
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(
            f"vtok.train: error (rank {info.rank}): lost contact with another rank (it died, or a collective "
            f"timed out after trainer.collective_timeout_s={config.trainer.collective_timeout_s} s): {first}",
            file=sys.stderr,
        )
        return 1
    finally:
        trainer = None  # DDP's reducer holds the process group: release it before the group is destroyed
        close_distributed()
    return PREEMPTED_EXIT_CODE if preempted else 0


def main() -> None:
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
