"""Where a run reports: log lines to stdout and `stdout.log` in the job folder, TensorBoard scalars and images.

Only rank 0 writes; other ranks print errors only. TensorBoard is used when the
`tensorboard` package is installed (`pip install tensorboard`), else one line says it is off.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch
from tqdm import tqdm

FORMAT = "%(asctime)s %(levelname).1s %(name)s: %(message)s"


class TqdmHandler(logging.StreamHandler):
    """Log lines printed above an active progress bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stdout)
        except Exception:  # logging must never break training
            self.handleError(record)


def setup_logging(folder: Path | None, is_main: bool) -> None:
    """vtok's loggers to stdout (rank 0: info; others: errors only) and, on rank 0, `folder/stdout.log`."""
    logger = logging.getLogger("vtok")
    logger.setLevel(logging.INFO)
    for handler in list(logger.handlers):
        if getattr(handler, "_vtok_run", False):
            logger.removeHandler(handler)
            handler.close()
    handlers: list[logging.Handler] = [TqdmHandler()]
    handlers[0].setLevel(logging.INFO if is_main else logging.ERROR)
    if is_main and folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(folder / "stdout.log"))
    for handler in handlers:
        handler.setFormatter(logging.Formatter(FORMAT, "%H:%M:%S"))
        handler._vtok_run = True
        logger.addHandler(handler)
    logger.propagate = False


class Scalars:
    """TensorBoard writer on rank 0 when available; a no-op otherwise."""

    def __init__(self, folder: Path, enabled: bool) -> None:
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            logging.getLogger(__name__).info("TensorBoard off: `pip install tensorboard` to get scalars in %s",
                                             folder / "tensorboard")
            return
        self.writer = SummaryWriter(str(folder / "tensorboard"))

    def add(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)

    def add_clip(self, tag: str, x: torch.Tensor, reconstruction: torch.Tensor, step: int) -> None:
        """First, middle and last frames of a clip [1,3,T,H,W] above its reconstruction's, as one image."""
        if self.writer is None:
            return
        t = x.shape[2]
        picks = sorted({0, t // 2, t - 1})
        rows = [torch.cat([v[0, :, i] for i in picks], dim=-1) for v in (x, reconstruction)]
        self.writer.add_image(tag, ((torch.cat(rows, dim=-2) + 1) / 2).clamp(0, 1), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
