"""Where a run reports: log lines to stdout and `stdout.log` in the job folder, TensorBoard scalars and images,
Weights & Biases (optional), and mp4 previews of validation clips.

Only rank 0 writes; other ranks print errors only. TensorBoard is used when the `tensorboard` package is
installed, else one line says it is off. W&B (`trainer.wandb=true`, `pip install wandb`) logs the same scalars
and images into one run per job, resumed when the job resumes; `WANDB_MODE=offline` keeps it on disk.
"""

from __future__ import annotations

import json
import logging
import secrets
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..io.video import write_video

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


def require_wandb() -> Any:
    """The wandb module; ValueError saying how to install it (checked before anything expensive is built)."""
    try:
        import wandb
    except ImportError:
        raise ValueError(
            "trainer.wandb=true needs the wandb package: pip install wandb (or set trainer.wandb=false)"
        ) from None
    return wandb


def start_wandb(folder: Path, project: str, group: str, name: str) -> Any:
    """A W&B run for the job, with the resolved config; the run id is kept in the job folder, so a resumed job
    continues the same run."""
    wandb = require_wandb()
    id_file = folder / "wandb_run_id.txt"
    run_id = id_file.read_text().strip() if id_file.is_file() else secrets.token_hex(4)
    id_file.write_text(run_id + "\n")
    config_file = folder / "config.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else None
    return wandb.init(
        project=project,
        group=group,
        name=name,
        id=run_id,
        resume="allow",
        dir=str(folder),
        config=config,
        settings=wandb.Settings(console="off"),
    )  # the log is in stdout.log already


def clip_grid(x: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """First, middle and last frames of a clip [1,3,T,H,W] above its reconstruction's: [3,2H,3W] in [0,1]."""
    t = x.shape[2]
    picks = sorted({0, t // 2, t - 1})
    rows = [torch.cat([v[0, :, i] for i in picks], dim=-1) for v in (x, reconstruction)]
    return ((torch.cat(rows, dim=-2).float() + 1) / 2).clamp(0, 1)


def write_preview(path: Path, clips: list[torch.Tensor], fps: float = 8.0) -> Path:
    """Clips [1,3,T,H,W] in [-1,1] side by side (input | reconstruction | ...) as an mp4, written atomically."""
    video = torch.cat([c[0].float() for c in clips], dim=-1)  # [3,T,H,nW]
    frames = ((video.clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).permute(1, 2, 3, 0).numpy()
    return write_video(path, np.ascontiguousarray(frames), fps)


class Scalars:
    """TensorBoard writer (and a W&B run) on rank 0 when enabled; a no-op otherwise."""

    def __init__(self, folder: Path, enabled: bool, wandb_run: Any = None) -> None:
        self.writer = None
        self.wandb_run = wandb_run
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            logging.getLogger(__name__).info(
                "TensorBoard off: `pip install tensorboard` to get scalars in %s", folder / "tensorboard"
            )
            return
        self.writer = SummaryWriter(str(folder / "tensorboard"))

    def add(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)
        if self.wandb_run is not None:
            self.wandb_run.log(values, step=step)

    def add_clip(self, tag: str, x: torch.Tensor, reconstruction: torch.Tensor, step: int) -> None:
        """The clip's first, middle and last frames above its reconstruction's, as one image."""
        grid = clip_grid(x, reconstruction)
        if self.writer is not None:
            self.writer.add_image(tag, grid, step)
        if self.wandb_run is not None:
            import wandb

            self.wandb_run.log({tag: wandb.Image(grid.permute(1, 2, 0).numpy())}, step=step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()
