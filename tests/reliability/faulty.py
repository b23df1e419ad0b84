"""Helpers of the reliability tests: a tiny training run as a subprocess, and waiting on what it writes."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager as ContextManager
from contextlib import contextmanager
from pathlib import Path

import torch

EXPERIMENT = "mock_Cosmos_Tokenize1_CV4x8x8_360p_HDVILA"
TINY = [
    f"experiment={EXPERIMENT}",
    "model.config.network.channels=16",
    "trainer.validate_at_start=false",
    "trainer.run_validation=false",
    "checkpoint.jit.enabled=false",
    "trainer.logging_iter=1",
    "trainer.precision=fp32",
    "trainer.tensorboard=false",
]
for _loader in ("dataloader_train", "dataloader_val"):
    TINY += [
        f"{_loader}.dataset.num_video_frames=9",
        f"{_loader}.dataset.crop_height=32",
        f"{_loader}.dataset.crop_width=32",
        f"{_loader}.num_workers=0",
    ]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def train_args(root: Path, name: str, *extra: str) -> list[str]:
    """`python -m vtok.train` overrides of a tiny CPU run in `root/posttraining/debug/name`."""
    return TINY + [f"job.output_root={root}", f"job.name={name}", *extra]


def job_folder(root: Path, name: str) -> Path:
    return root / "posttraining" / "debug" / name


def training(root: Path, name: str, *extra: str, env: dict[str, str] | None = None) -> ContextManager[subprocess.Popen]:
    """`python -m vtok.train` running in the background (see `launched`), its output to `root/name.out`."""
    command = [sys.executable, "-m", "vtok.train", "--", *train_args(root, name, *extra)]
    return launched(command, root / f"{name}.out", env)


def run_training(root: Path, name: str, *extra: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vtok.train", "--", *train_args(root, name, *extra)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=timeout,
        **kw,
    )


def wait_for(condition: Callable[[], object], timeout: float, what: str, poll: float = 0.05) -> object:
    """Poll `condition` until it is truthy (its value is returned); fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def logged_iterations(folder: Path) -> list[int]:
    """Iterations the job's stdout.log reports, in order (repeats after a resume included)."""
    log = folder / "stdout.log"
    text = log.read_text(errors="replace") if log.is_file() else ""
    return [int(m) for m in re.findall(r"\bit (\d+)/\d+ \|", text)]


def logged_losses(folder: Path) -> list[tuple[int, float]]:
    """(iteration, total loss) of every step line in the job's stdout.log, in order."""
    log = folder / "stdout.log"
    text = log.read_text(errors="replace") if log.is_file() else ""
    return [(int(m[1]), float(m[2])) for m in re.finditer(r"\bit (\d+)/\d+ \| loss (\S+)", text)]


def latest_checkpoint(folder: Path) -> Path | None:
    latest = folder / "checkpoints" / "latest_checkpoint.txt"
    return folder / "checkpoints" / latest.read_text().strip() if latest.is_file() else None


def load_iteration(path: Path) -> int:
    """The iteration a checkpoint file holds (it must load completely)."""
    return int(torch.load(path, map_location="cpu", weights_only=True)["iteration"])


@contextmanager
def launched(command: list[str], output: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """`command` running in a session of its own, its output to `output`; on exit it is killed with all its
    descendants, so no worker of a torchrun outlives the test."""
    with open(output, "ab") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env or ENV, start_new_session=True)
    try:
        yield proc
    finally:
        for pid in [*descendants(proc.pid), proc.pid]:  # torchrun starts each worker in a session of its own
            try:
                os.killpg(pid, signal.SIGKILL) if pid == proc.pid else os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()


def children(pid: int) -> list[int]:
    """Process ids of the direct children of `pid` (Linux /proc; [] elsewhere or once it is gone)."""
    try:
        return [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]
    except OSError:
        return []


def descendants(pid: int) -> list[int]:
    found = children(pid)
    return found + [d for child in found for d in descendants(child)]


def free_port() -> int:
    """A TCP port nobody listens on now (torchrun's --master_port=0 does not pick one by itself)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(port: int | None, *args: str) -> list[str]:
    """The command line of `torchrun --nproc_per_node=2 ARGS`: static rendezvous on a loopback master port, or
    `--standalone` (c10d rendezvous on a free port, which supports restarts) when `port` is None."""
    where = ["--standalone"] if port is None else ["--master_addr=127.0.0.1", f"--master_port={port}"]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", *where, *args]
