"""bench/gpu_check.py, the one prepared run for a lent GPU, works end to end: its `--smoke` mode runs every section
with the same code on the CPU at tiny shapes, so the GPU run does not fail on a typo."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
from conftest import REPO_ROOT


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO_ROOT / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[spec.name]
        raise
    return module


@pytest.mark.slow
def test_smoke_run_covers_every_section(tmp_path):
    gpu_check = load_gpu_check()
    out = tmp_path / "check"
    assert gpu_check.main(["--smoke", "--out", str(out)]) == 0
    results = json.loads(out.with_suffix(".json").read_text())
    sections = results["sections"]
    assert list(sections) == list(gpu_check.SECTIONS)
    assert not any(body.get("error") or body.get("skipped") for body in sections.values())
    assert all(row["latent_max_abs"] == 0 and row["reconstruction_max_abs"] == 0 for row in sections["parity"]["rows"])
    assert {row["model"] for row in sections["bf16"]["rows"]} == set(gpu_check.VIDEO_MODELS)
    assert all(row["frames_per_s"] > 0 and row["tflops"] > 0 for row in sections["throughput"]["rows"])
    assert len(sections["train"]["rows"]) == 8 and all(row["step_s"] > 0 for row in sections["train"]["rows"])
    first, resumed = sections["ddp"]["rows"]
    assert first["exit_code"] == resumed["exit_code"] == 0 and resumed["resumed"]
    assert resumed["saved"] == ["iter_000000002.pt", "iter_000000004.pt"]
    report = out.with_suffix(".md").read_text()
    assert all(f"## {name}" in report for name in gpu_check.SECTIONS)
