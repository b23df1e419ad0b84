"""Shared test helpers: the golden reference data location, seeding, small models, parity reporting.

The reference data (NVIDIA's outputs, see `<reference>/README.md`) is never copied into the repo. It
is read from `$VTOK_REFERENCE_DIR`, or from `../shared/reference` next to the repository. Tests that
need it are skipped, with the path in the reason, when it is absent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

import vtok

REPO_ROOT = Path(__file__).resolve().parent.parent
# vtok's machine caches (the measured training layout) go to a folder of this test session, subprocesses included.
os.environ["VTOK_CACHE_DIR"] = tempfile.mkdtemp(prefix="vtok-test-cache-")
PARITY_ERRORS = pytest.StashKey[dict]()

# Widths of the parity vectors: video blocks use GN1, image blocks GroupNorm(32), so 32 is their minimum.
SMALL_VIDEO_CHANNELS = 16
SMALL_IMAGE_CHANNELS = 32
VIDEO_MODELS = tuple(n for n in vtok.MODEL_NAMES if n[1] == "V")
IMAGE_MODELS = tuple(n for n in vtok.MODEL_NAMES if n[1] == "I")


def reference_dir() -> Path:
    """`$VTOK_REFERENCE_DIR`, or `<repo>/../shared/reference`."""
    env = os.environ.get("VTOK_REFERENCE_DIR")
    return Path(env) if env else (REPO_ROOT.parent / "shared" / "reference").resolve()


def reference_params(subdir: str, pattern: str, discrete_only: bool = False) -> list:
    """One pytest.param per reference file (id = model name), or a single skipped param saying why."""
    folder = reference_dir() / subdir
    files = sorted(folder.glob(pattern)) if folder.is_dir() else []
    if discrete_only:
        files = [
            f for f in files if json.loads(f.with_suffix(".json").read_text())["network_config"]["name"] in ("DV", "DI")
        ]
    if not files:
        reason = f"reference data not found: no {pattern} in {folder} (set VTOK_REFERENCE_DIR)"
        return [pytest.param(None, marks=pytest.mark.skip(reason=reason), id="no-reference-data")]
    return [pytest.param(f, id=f.name.split(".")[0]) for f in files]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize reference-driven tests at collection time over the files that exist."""
    if "parity_file" in metafunc.fixturenames:
        metafunc.parametrize("parity_file", reference_params("parity", "*.safetensors"))
    if "discrete_parity_file" in metafunc.fixturenames:
        metafunc.parametrize("discrete_parity_file", reference_params("parity", "*.safetensors", discrete_only=True))
    if "schema_file" in metafunc.fixturenames:
        metafunc.parametrize("schema_file", reference_params("schema", "*.json"))
    if "discrete_schema_file" in metafunc.fixturenames:
        metafunc.parametrize("discrete_schema_file", reference_params("schema", "*.json", discrete_only=True))


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """Every test starts from the same RNG state, so random weights and inputs are reproducible."""
    torch.manual_seed(0)


@pytest.fixture
def parity_log(request: pytest.FixtureRequest) -> dict:
    """{model: {tensor: max abs error}}, printed in the terminal summary (see below)."""
    return request.config.stash.setdefault(PARITY_ERRORS, {})


def small_tokenizer(name: str, **overrides) -> vtok.Tokenizer:
    """A randomly initialized, eval-mode tokenizer at test width (16 for video, 32 for image models)."""
    width = SMALL_VIDEO_CHANNELS if name[1] == "V" else SMALL_IMAGE_CHANNELS
    return vtok.build_tokenizer(name, **{"channels": width, **overrides}).eval()


def random_input(*shape: int, seed: int = 1) -> torch.Tensor:
    """Uniform [-1, 1) input, as the reference's parity vectors use."""
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    errors = config.stash.get(PARITY_ERRORS, {})
    if not errors:
        return
    terminalreporter.section("parity vs NVIDIA reference: max |error| per model")
    for model in sorted(errors):
        cells = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in errors[model].items())
        terminalreporter.write_line(f"{model}: {cells}")


def synthetic_frames(num_frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8 RGB `[T,H,W,3]` with texture and motion: a drifting colour gradient and a moving square."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    phase = rng.uniform(0, 6.28, size=3)
    frames = []
    for t in range(num_frames):
        channels = [np.sin(xx / 6 + t / 4 + phase[c]) + np.cos(yy / 9 - t / 6 + phase[c]) for c in range(3)]
        frame = np.stack(channels, -1) * 50 + 128
        top, left = (3 + 2 * t) % max(1, height - 8), (5 + 3 * t) % max(1, width - 8)
        frame[top : top + 8, left : left + 8] = (230, 40, 40)
        frames.append(frame.clip(0, 254).astype(np.uint8))
    return np.stack(frames)


def vtok_cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `vtok ARGS` as a user does (a subprocess), capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", "vtok", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )
