"""The memory planner: predicted peaks against peaks measured on the CPU, the budget fitter's choices, `--plan`."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import datetime

import pytest
import torch
from test_loss_extras import TinyFlow
from test_train import SMALL

from vtok.cli.train import main as run
from vtok.config import parse_train_args, resolve_now
from vtok.networks.vgg import TAP_CHANNELS, VGG16Features
from vtok.training.distributed import DistInfo
from vtok.training.memory_fit import candidates, fit_memory, usable_bytes, with_knobs
from vtok.training.memory_plan import GB, compose, estimate_memory, knobs_of
from vtok.training.memory_step import measure_step
from vtok.training.memory_tracker import AllocationLog, LiveBytes
from vtok.training.trainer import Trainer

PERCEPTUAL = "model.config.loss.config.perceptual.config"


def shape(frames: int, crop: int) -> list[str]:
    return [
        f"dataloader_train.dataset.num_video_frames={frames}",
        f"dataloader_train.dataset.crop_height={crop}",
        f"dataloader_train.dataset.crop_width={crop}",
    ]


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vgg") / "vgg16.pth"
    torch.manual_seed(0)
    torch.save(VGG16Features().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def lpips_folder(tmp_path_factory):
    """Random weights in LPIPS' two files (torchvision's vgg16 and lpips' heads)."""
    torch.manual_seed(30)
    folder = tmp_path_factory.mktemp("lpips")
    torch.save(VGG16Features().state_dict(), folder / "vgg16.pth")
    heads = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate(TAP_CHANNELS)}
    torch.save(heads, folder / "vgg.pth")
    return folder


@pytest.fixture(scope="module")
def flow_file(tmp_path_factory):
    """A small TorchScript flow network with RAFT's call signature (the planner runs it on fake inputs)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("flow") / "tiny_flow.jit"
    torch.jit.script(TinyFlow().eval()).save(str(path))
    return path


def small_config(root, vgg_file, *extra: str):
    args = SMALL + [
        f"job.output_root={root}",
        "job.name=plan",
        "trainer.tensorboard=false",
        "trainer.precision=fp32",
        f"{PERCEPTUAL}.vgg_weights={vgg_file}",
        f"{PERCEPTUAL}.dtype=float32",  # bf16 convolutions are emulated (slow) on CPUs without native bf16
        *extra,
    ]
    config, _ = parse_train_args(args)
    return resolve_now(config, datetime.now())


def test_live_bytes_counts_storages_once_and_frees_them():
    weight = torch.zeros(1000)
    tracker = LiveBytes()
    tracker.ignore(weight)
    with tracker:
        a = torch.ones(1000)  # 4000 B
        view = weight[:10] * 1  # a new 40 B storage; the weight itself is not counted
        b = a.view(10, 100) + 1  # 4000 B more: 8040 live
        del a
        c = torch.ones(500)  # 8040 - 4000 + 2000
    assert (tracker.peak, tracker.live) == (8040, 6040)
    del view, b, c
    assert tracker.live == 0


@pytest.mark.parametrize(
    "extra",
    [
        shape(9, 32),
        shape(17, 48) + ["trainer.activation_checkpointing=true"],
        shape(17, 48) + [f"{PERCEPTUAL}.chunk_frames=4"],
        shape(9, 32) + ["dataloader_train.batch_size=2", "trainer.grad_accum_iter=2"],
        shape(17, 48) + ["loss.adversarial.enabled=true", "loss.adversarial.discriminator=both"],
        shape(9, 48) + ["loss.lpips.enabled=true", "loss.lpips.weights={lpips}"],
        shape(9, 48) + ["loss.flow.enabled=true", "loss.flow.network={flow}", "loss.flow.dtype=float32"],
    ],
    ids=["plain", "checkpointing", "perceptual-chunks", "accumulation", "adversarial", "lpips", "flow"],
)
def test_predicted_peak_is_within_15_percent_of_the_measured_cpu_peak(
    tmp_path, vgg_file, lpips_folder, flow_file, extra
):
    extra = [e.format(lpips=lpips_folder, flow=flow_file) for e in extra]
    config = small_config(tmp_path, vgg_file, *extra)
    predicted = estimate_memory(config, 1, "cpu").peak
    torch.manual_seed(0)
    with AllocationLog() as log:  # torch's profiler: every CPU allocation, from before the trainer exists
        trainer = Trainer(config, DistInfo())
        trainer.batches = itertools.repeat(next(iter(trainer.train_loader))["video"])
        trainer.train_step()  # the optimizer state appears here
        log.mark()
        trainer.train_step()
    _, measured = log.peak_since_mark()
    assert abs(predicted - measured) / measured < 0.15, (predicted, measured)


def predicted_peaks(config, *knob_sets) -> dict:
    return {k: compose(config, k, measure_step(with_knobs(config, k), k.step_knobs(False)), 1).peak for k in knob_sets}


def budget_for(peak: int) -> float:
    """A budget whose usable part (all but the headroom) just holds `peak` bytes."""
    return peak / GB / 0.9 * 1.001


def test_fit_keeps_a_config_that_fits_and_adds_the_cheapest_knob_that_suffices(tmp_path, vgg_file):
    config = small_config(tmp_path, vgg_file, *shape(9, 32))
    start = knobs_of(config, 1, "cpu")
    chunked = replace(start, perceptual_chunk_frames=4)
    peak = predicted_peaks(config, start, chunked)
    assert peak[chunked] < peak[start]
    assert fit_memory(config, budget_for(peak[start]), 1, "cpu").knobs == start  # fits as it is: nothing changes
    between = budget_for((peak[start] + peak[chunked]) // 2)
    assert usable_bytes(between) < peak[start]
    assert fit_memory(config, between, 1, "cpu").knobs == chunked  # the cheapest knob alone is enough


def test_fit_splits_the_batch_last_and_keeps_the_global_batch(tmp_path, vgg_file):
    config = small_config(
        tmp_path, vgg_file, *shape(9, 48), "dataloader_train.batch_size=2", f"{PERCEPTUAL}.enabled=false"
    )
    start = knobs_of(config, 1, "cpu")
    options = [knobs for _, knobs in candidates(start, 1, perceptual=False)]
    peak = predicted_peaks(config, *options)
    whole = min(peak[k] for k in options if k.micro_batch == 2)  # the least any setting with the whole batch needs
    split = min(peak[k] for k in options if k.micro_batch == 1)
    assert split < whole
    budget = (split + whole) / 2 / GB / 0.9  # only a micro-batch of 1 fits
    tight = fit_memory(config, budget, 1, "cpu")
    assert tight.estimate.peak <= usable_bytes(budget)
    assert (tight.knobs.micro_batch, tight.knobs.grad_accum) == (1, 2)  # the global batch of 2 is kept
    assert (tight.config.dataloader_train.batch_size, tight.config.trainer.grad_accum_iter) == (1, 2)


def test_fit_refuses_an_impossible_budget_in_one_line(tmp_path, vgg_file):
    config = small_config(tmp_path, vgg_file, *shape(9, 32))
    with pytest.raises(ValueError) as err:
        fit_memory(config, 0.001, 1, "cpu")
    message = str(err.value)
    assert "\n" not in message and message.startswith("trainer.memory_budget_gb=0.001: nothing fits")
    assert "trainer.activation_checkpointing=true" in message  # the smallest plan it tried


def test_train_with_an_impossible_budget_exits_1_before_building_anything(tmp_path, vgg_file, capsys):
    args = SMALL + [f"job.output_root={tmp_path}", "job.name=refused", f"{PERCEPTUAL}.enabled=false"]
    assert run(args + ["trainer.memory_budget_gb=0.001", "trainer.device=cpu"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nothing fits" in err and "Traceback" not in err
    assert not (tmp_path / "posttraining").exists()


def test_plan_prints_the_parts_and_the_peak_without_training(tmp_path, vgg_file, capsys):
    args = SMALL + [f"job.output_root={tmp_path}", "job.name=plan", "trainer.device=cpu", "trainer.precision=fp32"]
    assert run(["--plan", *args, f"{PERCEPTUAL}.vgg_weights={vgg_file}"]) == 0
    out = capsys.readouterr().out
    for part in ("parameters", "optimizer (AdamW)", "EMA (fp32)", "loss networks", "gradients", "activations"):
        assert part in out
    assert "peak per GPU" in out and not (tmp_path / "posttraining").exists()


def test_plan_with_the_flow_term_but_no_flow_network_is_one_line(tmp_path, capsys):
    args = SMALL + [f"job.output_root={tmp_path}", "trainer.device=cpu", "loss.flow.enabled=true"]
    assert run(["--plan", *args, f"loss.flow.network={tmp_path / 'missing.jit'}"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "flow" in err and "missing.jit" in err and "Traceback" not in err


def test_frozen_parts_lora_and_the_discriminator_change_the_state(tmp_path, vgg_file):
    def plan(*extra):
        return estimate_memory(small_config(tmp_path, vgg_file, *shape(9, 32), *extra), 1, "cpu")

    full, decoder = plan(), plan("model.config.trainable=decoder")
    lora = plan("model.config.trainable=decoder", "model.config.lora.rank=2")
    adversarial = plan("model.config.trainable=decoder", "loss.adversarial.enabled=true")
    assert lora.trainable < decoder.trainable < full.trainable == full.parameters
    for part in ("optimizer (AdamW)", "EMA (fp32)"):  # frozen weights have no moments and no EMA
        assert lora.parts[part] < decoder.parts[part] < full.parts[part]
        assert decoder.parts[part] * full.trainable == full.parts[part] * decoder.trainable
    assert "discriminator" in adversarial.parts and "discriminator" not in decoder.parts
    assert adversarial.peak > decoder.peak
