"""The trainer on a small CV4x8x8 (16 channels, 9x32x32 mock clips) on the CPU: learning, checkpoints and jits,
resuming, DDP over gloo, loading NVIDIA-layout files, --dryrun and the saved config."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import torch

from vtok.checkpoint import load_tokenizer
from vtok.checkpoint.state_dict import ema_state_dict, network_state_dict, training_state_dict
from vtok.cli.train import main as run
from vtok.config import load_config, parse_train_args, resolve_now
from vtok.networks.config import get_config
from vtok.networks.tokenizer import tokenizer_from_config
from vtok.training.distributed import DistInfo
from vtok.training.trainer import Trainer

EXPERIMENT = "mock_Cosmos_Tokenize1_CV4x8x8_360p_HDVILA"
SMALL = [
    f"experiment={EXPERIMENT}",
    "model.config.network.channels=16",
    "trainer.validate_at_start=false",
    "trainer.run_validation=false",
    "checkpoint.jit.enabled=false",
    "trainer.logging_iter=1",
]
for _loader in ("dataloader_train", "dataloader_val"):
    SMALL += [
        f"{_loader}.dataset.num_video_frames=9",
        f"{_loader}.dataset.crop_height=32",
        f"{_loader}.dataset.crop_width=32",
        f"{_loader}.num_workers=0",
    ]


def overrides(root: Path, name: str, *extra: str) -> list[str]:
    return SMALL + [f"job.output_root={root}", f"job.name={name}", *extra]


def make_trainer(root: Path, name: str, *extra: str) -> Trainer:
    config, _ = parse_train_args(overrides(root, name, *extra))
    return Trainer(resolve_now(config, datetime.now()), DistInfo())


def logged_losses(folder: Path) -> dict[int, float]:
    """{iteration: total loss} from a job's stdout.log."""
    text = (folder / "stdout.log").read_text()
    return {int(m[1]): float(m[2]) for m in re.finditer(r"it (\d+)/\d+ \| loss ([0-9.]+)", text)}


def test_loss_goes_down_on_a_fixed_batch(tmp_path):
    trainer = make_trainer(tmp_path, "fixed", "optimizer.lr=1e-3", "scheduler.warmup=0", "trainer.max_iter=20")
    x = next(iter(trainer.train_loader))["video"]
    trainer.batches = itertools.repeat(x)
    losses = [float(trainer.train_step()[0]["total"]) for _ in range(20)]
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5 and losses[-1] < 0.8 * losses[0], losses
    assert trainer.iteration == 20 and trainer.ema.updates == 20


def test_checkpoint_layout_and_jits_reproduce_the_ema_network(tmp_path):
    trainer = make_trainer(
        tmp_path,
        "jit",
        "trainer.max_iter=2",
        "checkpoint.save_iter=2",
        "optimizer.lr=1e-3",
        "scheduler.warmup=0",
        "model.config.ema.warmup=true",
        "checkpoint.jit.enabled=true",
        "checkpoint.jit.input_shape=[1,3,5,32,32]",
        "checkpoint.jit.dtype=float32",
    )
    trainer.train()
    folder = trainer.checkpoint_dir
    assert (folder / "latest_checkpoint.txt").read_text().strip() == "iter_000000002.pt"
    for suffix in (".pt", "_enc.jit", "_dec.jit", "_ema.jit"):
        assert (folder / f"iter_000000002{suffix}").is_file()
    saved = torch.load(folder / "iter_000000002.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "grad_scaler", "iteration"} <= set(saved)
    assert saved["iteration"] == 2 and saved["grad_scaler"] == {}
    model = saved["model"]
    assert "ema.network-encoder-conv_in-0-conv3d-weight" in model and "network.encoder.conv_in.0.conv3d.weight" in model
    assert not any(".patcher3d." in k or ".unpatcher3d." in k for k in model)
    ema = network_state_dict(model, ema=True)
    for name, value in trainer.ema.shadow.items():  # the saved EMA is the one after the save's own step
        assert torch.equal(ema[name], value.cpu()), name
    assert not torch.equal(ema["encoder.conv_in.0.conv3d.weight"], model["network.encoder.conv_in.0.conv3d.weight"])

    tok = load_tokenizer(folder / "iter_000000002.pt", ema=True)
    x = torch.rand(1, 3, 9, 32, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1
    enc = torch.jit.load(str(folder / "iter_000000002_enc.jit"))
    dec = torch.jit.load(str(folder / "iter_000000002_dec.jit"))
    full = torch.jit.load(str(folder / "iter_000000002_ema.jit"))
    with torch.no_grad():
        latent = tok.encode(x)
        torch.testing.assert_close(enc(x)[0], latent, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(dec(latent), tok.decode(latent), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(full(x)[0], tok(x).reconstructions, rtol=1e-5, atol=1e-5)


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path):
    straight = make_trainer(tmp_path, "straight", "trainer.max_iter=4", "checkpoint.save_iter=2")
    straight.train()
    first = make_trainer(tmp_path, "resumed", "trainer.max_iter=2", "checkpoint.save_iter=2")
    first.train()
    resumed = make_trainer(tmp_path, "resumed", "trainer.max_iter=4", "checkpoint.save_iter=2")
    assert resumed.start_iteration == 2 and resumed.data_step == 2
    resumed.train()
    assert resumed.iteration == 4
    expected, got = logged_losses(straight.folder), logged_losses(resumed.folder)
    assert got[3] == expected[3] and got[4] == expected[4]
    for a, b in zip(straight.network.parameters(), resumed.network.parameters()):
        assert torch.equal(a, b)
    for name in straight.ema.shadow:
        assert torch.equal(straight.ema.shadow[name], resumed.ema.shadow[name])
    sa, sb = straight.optimizer.state_dict(), resumed.optimizer.state_dict()
    for i in sa["state"]:
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(sa["state"][i][key], sb["state"][i][key])
    assert straight.scheduler.state_dict()["last_epoch"] == resumed.scheduler.state_dict()["last_epoch"] == 4


@pytest.mark.parametrize("parallelism, port", [("ddp", 29517), ("fsdp", 29518)])
def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path, parallelism, port):
    extra = ("trainer.max_iter=3", "checkpoint.save_iter=3", "trainer.precision=fp32", "scheduler.warmup=0")
    extra += ("trainer.conv_kernels=conv3d",)  # a tuned kernel table differs with the thread count and batch
    extra += ("optimizer.eps=1e-6",)  # gradients that cancel to ~1e-8: see DISTRIBUTED in test_train_modes.py
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={port}",
        "-m",
        "vtok.train",
        "--",
        *overrides(
            tmp_path,
            "ddp",
            *extra,
            "dataloader_train.batch_size=1",
            f"trainer.parallelism={parallelism}",
            "trainer.grad_accum_iter=2",
            "model.config.ema.warmup=true",
        ),
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    single = make_trainer(
        tmp_path,
        "single",
        *extra,
        "dataloader_train.batch_size=2",
        "trainer.grad_accum_iter=2",
        "model.config.ema.warmup=true",
    )
    single.train()
    ddp_folder = single.folder.with_name("ddp")
    ddp, one = logged_losses(ddp_folder), logged_losses(single.folder)
    assert sorted(ddp) == [1, 2, 3]
    for it in ddp:
        assert ddp[it] == pytest.approx(one[it], rel=1e-4, abs=1e-5)
    saved = torch.load(ddp_folder / "checkpoints" / "iter_000000003.pt", weights_only=True)
    assert saved["vtok"]["world_size"] == 2
    for name, value in network_state_dict(saved["model"]).items():
        torch.testing.assert_close(value, single.network.state_dict()[name], rtol=1e-4, atol=1e-5)
    for name, value in network_state_dict(saved["model"], ema=True).items():
        torch.testing.assert_close(value, single.ema.shadow[name], rtol=1e-4, atol=1e-5)
    state = saved["optimizer"]["state"]
    assert sorted(state) == list(range(len(list(single.network.parameters()))))
    torch.testing.assert_close(
        state[0]["exp_avg"], single.optimizer.state_dict()["state"][0]["exp_avg"], rtol=1e-3, atol=1e-6
    )


def reference_model_pt(path: Path, iteration: int) -> dict[str, torch.Tensor]:
    """A model.pt as NVIDIA's trainer writes it (FusedAdam: step and tensor lr in the param group)."""
    net = tokenizer_from_config(get_config("CV4x8x8-360p", channels=16), "CV4x8x8-360p")
    state = net.state_dict()
    params = [p for p in net.parameters()]
    optimizer = {
        "state": {i: {"exp_avg": torch.randn_like(p), "exp_avg_sq": torch.rand_like(p)} for i, p in enumerate(params)},
        "param_groups": [
            {
                "lr": torch.tensor(1e-4),
                "betas": (0.5, 0.999),
                "eps": 1e-8,
                "weight_decay": 0.01,
                "bias_correction": True,
                "step": torch.tensor([iteration], dtype=torch.int32),
                "params": list(range(len(params))),
            }
        ],
    }
    ema = {k: v + 0.01 for k, v in state.items()}
    scheduler = {
        "base_lrs": [1e-4],
        "last_epoch": iteration,
        "_step_count": iteration + 1,
        "_last_lr": [1e-4],
        "verbose": False,
    }
    torch.save(
        {
            "model": {**training_state_dict(state), **ema_state_dict(ema)},
            "optimizer": optimizer,
            "scheduler": scheduler,
            "grad_scaler": {},
            "iteration": iteration,
        },
        path,
    )
    return state


def test_loading_a_reference_model_pt(tmp_path):
    path = tmp_path / "model.pt"
    state = reference_model_pt(path, iteration=123)
    common = (f"checkpoint.load_path={path}", "checkpoint.strict_resume=true", "trainer.max_iter=124")
    with_state = make_trainer(tmp_path, "with_state", *common, "checkpoint.load_training_state=true")
    assert with_state.iteration == 123
    assert float(with_state.optimizer.param_groups[0]["lr"]) == pytest.approx(1e-4)
    assert torch.equal(
        with_state.network.state_dict()["decoder.conv_out.1.conv3d.weight"], state["decoder.conv_out.1.conv3d.weight"]
    )
    assert torch.equal(
        with_state.ema.shadow["encoder.conv_in.0.conv3d.weight"], state["encoder.conv_in.0.conv3d.weight"] + 0.01
    )
    with_state.train()
    assert (with_state.checkpoint_dir / "iter_000000124.pt").is_file()

    own_hparams = make_trainer(
        tmp_path,
        "own_hparams",
        *common,
        "checkpoint.load_training_state=true",
        "checkpoint.load_optimizer_hparams=false",
        "optimizer.lr=5e-5",
        "optimizer.betas=[0.9,0.99]",
        "scheduler.warmup=1000",
    )
    group = own_hparams.optimizer.param_groups[0]
    assert group["betas"] == (0.9, 0.99) and group["lr"] == pytest.approx(5e-5 * 124 / 1000)
    assert own_hparams.iteration == 123

    weights_only = make_trainer(tmp_path, "weights_only", *common, "checkpoint.load_training_state=false")
    assert weights_only.iteration == 0
    assert float(weights_only.optimizer.param_groups[0]["lr"]) == pytest.approx(1e-4 / 5000)


def test_dryrun_prints_the_config_and_trains_nothing(tmp_path, capsys):
    assert run(["--", "--dryrun", *overrides(tmp_path, "dry", "trainer.max_iter=7")]) == 0
    out = capsys.readouterr().out
    assert "trainer.max_iter=7" in out and "model.config.network.channels=16" in out
    assert not any(tmp_path.iterdir())


def test_cli_train_command_and_saved_config(tmp_path, capsys):
    import argparse

    from vtok.cli import train as train_cmd

    parser = argparse.ArgumentParser()
    train_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["train", "--dryrun", f"experiment={EXPERIMENT}"])
    assert args.func(args) == 0 and "job.group=debug" in capsys.readouterr().out
    args = parser.parse_args(["train", "--", *overrides(tmp_path, "cli", "trainer.max_iter=1")])
    assert args.func(args) == 0
    folder = tmp_path / "posttraining" / "debug" / "cli"
    assert (folder / "checkpoints" / "iter_000000001.pt").is_file() and (folder / "stdout.log").is_file()
    saved = load_config(folder)
    assert saved.trainer.max_iter == 1 and saved.network.channels == 16 and saved.job.name == "cli"


def test_bad_override_fails_in_one_line(capsys):
    assert run([f"experiment={EXPERIMENT}", "trainer.max_itr=3"]) == 2
    err = capsys.readouterr().err
    assert "max_iter" in err and len(err.strip().splitlines()) == 1


def test_validation_and_tensorboard_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = make_trainer(
        tmp_path,
        "tb",
        "trainer.max_iter=1",
        "trainer.run_validation=true",
        "trainer.validate_at_start=true",
        "trainer.validation_iter=1",
    )
    trainer.train()
    events = EventAccumulator(str(trainer.folder / "tensorboard")).Reload()
    tags = set(events.Tags()["scalars"])
    assert {
        "train/total",
        "train/color",
        "train/lr",
        "train/grad_norm",
        "perf/step_time_s",
        "perf/peak_memory_gb",
        "val/psnr",
        "val/ssim",
        "val/ema_psnr",
        "val/ema_ssim",
    } <= tags
    assert [e.step for e in events.Scalars("val/psnr")] == [0, 1]
    assert "val/reconstruction" in events.Tags()["images"]
    previews = sorted(p.name for p in (trainer.folder / "previews").iterdir())
    assert previews == ["iter_000000000.mp4", "iter_000000001.mp4"]
    from vtok.io.video import probe_video

    info = probe_video(trainer.folder / "previews" / previews[-1])
    assert (info.num_frames, info.height, info.width) == (9, 32, 3 * 32)  # input | reconstruction | EMA


def test_weights_and_biases_run_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    trainer = make_trainer(
        tmp_path,
        "wb",
        "trainer.max_iter=1",
        "trainer.wandb=true",
        "trainer.run_validation=true",
        "trainer.validate_at_start=false",
        "trainer.validation_iter=1",
        "trainer.tensorboard=false",
    )
    trainer.train()
    run_id = (trainer.folder / "wandb_run_id.txt").read_text().strip()
    runs = list((trainer.folder / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert len(runs) == 1
    keys = (b"train/total", b"train/color", b"val/psnr", b"val/ema_ssim", b"val/reconstruction")
    deadline = time.monotonic() + 60  # W&B's service process writes the run file after finish() returns
    while not all(key in runs[0].read_bytes() for key in keys) and time.monotonic() < deadline:
        time.sleep(0.5)
    data = runs[0].read_bytes()
    for key in keys:
        assert key in data, key


def test_auto_precision_is_bf16_only_where_bf16_is_native():
    from vtok.devices import cpu_has_native_bf16
    from vtok.training.precision import resolve_precision

    assert resolve_precision("auto", torch.device("cuda", 0)) == "bf16_autocast"
    expected = "bf16_autocast" if cpu_has_native_bf16() else "fp32"
    assert resolve_precision("auto", torch.device("cpu")) == expected
    assert resolve_precision("bf16_pure", torch.device("cpu")) == "bf16_pure"


def test_training_with_video_consistency_windows(tmp_path):
    trainer = make_trainer(
        tmp_path,
        "vc",
        "trainer.max_iter=2",
        "loss.video_consistency.enabled=true",
        "loss.video_consistency.num_frames=5",
        "loss.video_consistency.step=4",
        "trainer.precision=fp32",
    )
    last = trainer.train()
    assert trainer.iteration == 2 and last["train/video_consistency"] > 0
    assert "loss terms: color, video_consistency" in (trainer.folder / "stdout.log").read_text()


def test_loaded_optimizer_state_follows_channels_last_parameters():
    from vtok.training.optim import match_param_layouts

    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(4, 3, 2, 3, 5).contiguous(memory_format=torch.channels_last_3d))
    grads = [torch.randn(weight.shape) for _ in range(2)]
    reference = torch.nn.Parameter(weight.detach().clone().contiguous())
    ref_opt = torch.optim.AdamW([reference], lr=0.1, fused=True)
    opt = torch.optim.AdamW([weight], lr=0.1, fused=True)
    for g, (p, o) in itertools.product(grads[:1], ((reference, ref_opt), (weight, opt))):
        p.grad = torch.empty_like(p).copy_(g)
        o.step()
    saved = {
        "state": {0: {k: v.contiguous() for k, v in opt.state_dict()["state"][0].items()}},
        "param_groups": opt.state_dict()["param_groups"],
    }
    opt.load_state_dict(saved)
    match_param_layouts(opt)
    assert opt.state[weight]["exp_avg"].stride() == weight.stride()
    for p, o in ((reference, ref_opt), (weight, opt)):
        p.grad = torch.empty_like(p).copy_(grads[1])
        o.step()
    torch.testing.assert_close(weight.detach(), reference.detach(), rtol=0, atol=0)


def test_trainer_times_conv_kernels_on_the_cpu_and_conv3d_setting_turns_them_off(tmp_path, monkeypatch):
    from vtok.networks.conv_kernels import kernel_convs
    from vtok.training.conv_tuning import CACHE_FILE

    monkeypatch.setenv("VTOK_CACHE_DIR", str(tmp_path / "cache"))
    trainer = make_trainer(tmp_path, "auto", "trainer.channels_last=false")
    log_text = (trainer.folder / "stdout.log").read_text()
    assert "conv kernels:" in log_text and "shapes measured" in log_text
    cache = json.loads((tmp_path / "cache" / CACHE_FILE).read_text())
    (entries,) = [v for k, v in cache.items() if not k.startswith("steps ")]
    assert entries and all(set(e["ms"]) >= {"conv3d"} for e in entries.values())
    tables = {id(conv.kernels) for conv in kernel_convs(trainer.network)}
    assert len(tables) == 1, "one table shared by every conv"

    off = make_trainer(tmp_path, "off", "trainer.channels_last=false", "trainer.conv_kernels=conv3d")
    assert all(conv.kernels is None for conv in kernel_convs(off.network))
    assert "Conv3d everywhere (trainer.conv_kernels)" in (off.folder / "stdout.log").read_text()
