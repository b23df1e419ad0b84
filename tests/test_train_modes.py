"""Post-training modes in the trainer: frozen parts (`model.config.trainable`), LoRA adapters, the adversarial stage
and the LPIPS term, on 16-channel CV4x8x8 / DV4x8x8 networks and 9x32x32 mock clips (tests/test_train.py's sizes).

What they keep: frozen weights (regular and EMA) bit-identical in `iter_N.pt` and the exported encoder jit, hence the
latents and token indices of a video; merged LoRA files that NVIDIA's strict loader and vtok read unchanged;
exact resumes with adapters and with the discriminator; 2-process DDP and FSDP2 runs equal to one process.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
import torch
from test_train import SMALL, logged_losses, reference_model_pt

from vtok.checkpoint import load_tokenizer, read_lora_file
from vtok.checkpoint.export import export_jit
from vtok.checkpoint.state_dict import (
    EMA_PREFIX,
    ema_state_dict,
    jit_state_dict_to_network,
    network_state_dict,
    training_state_dict,
)
from vtok.cli.main import main as vtok_main
from vtok.config import parse_train_args, resolve_now
from vtok.losses.adversarial import generator_loss
from vtok.metrics.lpips import LPIPS
from vtok.networks.config import get_config
from vtok.networks.lora import LoRASettings, add_lora, is_lora_key, load_lora_state_dict
from vtok.networks.tokenizer import tokenizer_from_config
from vtok.training.distributed import DistInfo
from vtok.training.trainer import Trainer

CV, DV = "CV4x8x8-360p", "DV4x8x8-360p"
TINY_D = ["loss.adversarial.discriminator_channels=8", "loss.adversarial.discriminator_layers=2"]
JIT = ["checkpoint.jit.enabled=true", "checkpoint.jit.input_shape=[1,3,5,32,32]", "checkpoint.jit.dtype=float32"]
FAST = ["optimizer.lr=1e-3", "scheduler.warmup=0", "trainer.precision=fp32"]


def experiment(model: str) -> str:
    return f"experiment=mock_Cosmos_Tokenize1_{model.replace('-', '_')}_HDVILA"


def arguments(root: Path, name: str, model: str, *extra: str) -> list[str]:
    return [experiment(model), *SMALL[1:], f"job.output_root={root}", f"job.name={name}", *extra]


def make(root: Path, name: str, model: str, *extra: str) -> Trainer:
    config, _ = parse_train_args(arguments(root, name, model, *extra))
    return Trainer(resolve_now(config, datetime.now()), DistInfo())


def write_start(path: Path, model: str) -> dict[str, dict[str, torch.Tensor]]:
    """A starting model.pt in NVIDIA's layout whose EMA differs from its regular weights; returns both as read back."""
    torch.manual_seed(3)
    network = tokenizer_from_config(get_config(model, channels=16), model)
    regular = {k: v.clone() for k, v in network.state_dict().items()}
    ema = {k: p.detach() + 0.01 * torch.randn_like(p) for k, p in network.named_parameters()}
    model_entry = {**training_state_dict(regular), **ema_state_dict(ema)}
    torch.save({"model": model_entry, "iteration": 0}, path)
    return {"regular": network_state_dict(model_entry), "ema": network_state_dict(model_entry, ema=True)}


def clip(seed: int = 4) -> torch.Tensor:
    return torch.rand(1, 3, 9, 32, 48, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@dataclass
class Job:
    root: Path
    start: Path
    start_weights: dict[str, dict[str, torch.Tensor]]
    trainer: Trainer

    @property
    def checkpoint(self) -> Path:
        return self.trainer.checkpoint_dir / "iter_000000002.pt"


def run_job(root: Path, model: str, *extra: str) -> Job:
    start = root / "start.pt"
    weights = write_start(start, model)
    common = (f"checkpoint.load_path={start}", "checkpoint.load_training_state=false", "trainer.max_iter=2")
    trainer = make(root, "job", model, *common, "checkpoint.save_iter=2", *FAST, *JIT, *extra)
    trainer.train()
    return Job(root, start, weights, trainer)


@pytest.fixture(scope="module")
def decoder_job(tmp_path_factory) -> Job:
    """DV4x8x8, trainable=decoder."""
    return run_job(tmp_path_factory.mktemp("decoder_job"), DV, "model.config.trainable=decoder")


@pytest.fixture(scope="module")
def lora_job(tmp_path_factory) -> Job:
    """CV4x8x8, LoRA rank 4 (alpha 8) on the decoder, with trainable=decoder."""
    return run_job(
        tmp_path_factory.mktemp("lora_job"),
        CV,
        "model.config.trainable=decoder",
        "model.config.lora.rank=4",
        "model.config.lora.alpha=8",
        "optimizer.lr=1e-2",
    )


def is_frozen(key: str, lora: bool) -> bool:
    """Frozen in the jobs above: the encoder side always, and with LoRA every base weight no adapter merges into."""
    return key.startswith(("encoder.", "quant_conv.")) or lora


def test_decoder_mode_freezes_everything_up_to_the_quantizer(decoder_job: Job) -> None:
    trainer, start = decoder_job.trainer, decoder_job.start_weights
    trainable = [n for n, p in trainer.network.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith(("post_quant_conv.", "decoder.")) for n in trainable)
    assert sorted(trainer.ema.shadow) == sorted(trainable)  # the EMA moves only what trains
    saved = torch.load(decoder_job.checkpoint, weights_only=True)
    assert len(saved["optimizer"]["state"]) == len(trainable)  # no optimizer state for frozen parts
    regular, ema = network_state_dict(saved["model"]), network_state_dict(saved["model"], ema=True)
    assert set(ema) == set(regular)  # NVIDIA's full set of ema.* keys
    frozen = [k for k in regular if is_frozen(k, lora=False)]
    assert frozen
    for key in frozen:
        assert torch.equal(regular[key], start["regular"][key]), key
        assert torch.equal(ema[key], start["ema"][key]), key
    assert not torch.equal(
        regular["decoder.conv_out.1.conv3d.weight"], start["regular"]["decoder.conv_out.1.conv3d.weight"]
    )
    assert not torch.equal(ema["decoder.conv_out.1.conv3d.weight"], start["ema"]["decoder.conv_out.1.conv3d.weight"])


@pytest.mark.parametrize("job_name", ["decoder_job", "lora_job"])
def test_exported_encoder_gives_the_starting_tokens_and_latents(job_name: str, request, tmp_path: Path) -> None:
    """The exported encoder jit holds the start's (EMA) encoder bit for bit: every video encodes as before."""
    job: Job = request.getfixturevalue(job_name)
    name = job.trainer.network.name
    encoder = torch.jit.load(str(job.checkpoint.with_name("iter_000000002_enc.jit")))
    for key, value in jit_state_dict_to_network(encoder.state_dict()).items():
        if key in job.start_weights["ema"]:
            assert torch.equal(value, job.start_weights["ema"][key]), key
    start = load_tokenizer(job.start, name, ema=True)
    before = export_jit(
        start, tmp_path, names={"encoder": "start_enc.jit"}, example_shape=(1, 3, 5, 32, 32), dtype=torch.float32
    )["encoder"]
    start_encoder = torch.jit.load(str(before))
    x = clip()
    with torch.no_grad():
        got, expected = encoder(x), start_encoder(x)
        assert torch.equal(got[0], expected[0])  # CV latents, or DV token indices
        if job.trainer.config.network.is_discrete:
            assert got[0].dtype == torch.int32 and torch.equal(got[1], expected[1])  # and the FSQ codes
        regular_before = load_tokenizer(job.start, name, ema=False).encode(x)
        regular_after = load_tokenizer(job.checkpoint, name, ema=False).encode(x)
    for a, b in zip(*(r if isinstance(r, tuple) else (r,) for r in (regular_before, regular_after))):
        assert torch.equal(a, b)


def test_lora_trains_only_adapters_and_saves_them_merged(lora_job: Job) -> None:
    trainer, start = lora_job.trainer, lora_job.start_weights
    trainable = [n for n, p in trainer.network.named_parameters() if p.requires_grad]
    assert trainable and all(is_lora_key(n) and n.startswith("decoder.") for n in trainable)
    saved = torch.load(lora_job.checkpoint, weights_only=True)
    assert len(saved["optimizer"]["state"]) == len(trainable)
    assert {"model", "optimizer", "scheduler", "grad_scaler", "iteration", "vtok", "vtok_lora"} <= set(saved)
    plain = tokenizer_from_config(get_config(CV, channels=16), CV)
    expected_keys = set(training_state_dict(plain.state_dict())) | {
        EMA_PREFIX + k.replace(".", "-") for k, _ in plain.named_parameters()
    }
    assert set(saved["model"]) == expected_keys  # NVIDIA's keys, nothing else: its strict loader takes it
    regular, ema = network_state_dict(saved["model"]), network_state_dict(saved["model"], ema=True)
    entry = saved["vtok_lora"]
    for key in regular:
        if key in entry["base"]:  # adapted: merged in iter_N.pt, the base kept unmerged beside it
            assert torch.equal(entry["base"][key], start["regular"][key]) and torch.equal(
                entry["ema_base"][key], start["ema"][key]
            )
            assert not torch.equal(regular[key], start["regular"][key])
        else:
            assert torch.equal(regular[key], start["regular"][key]) and torch.equal(ema[key], start["ema"][key]), key

    x = clip()
    with torch.no_grad():
        for use_ema in (False, True):  # merged file = base + adapters, regular and EMA
            loaded = load_tokenizer(lora_job.checkpoint, ema=use_ema)  # strict
            with trainer.ema.swapped(trainer.network) if use_ema else contextlib.nullcontext():
                expected = trainer.network.eval()(x).reconstructions
            torch.testing.assert_close(loaded(x).reconstructions, expected, rtol=0, atol=1e-5)
        settings, adapters = read_lora_file(lora_job.checkpoint.with_name("iter_000000002_lora.safetensors"))
        assert settings == LoRASettings(rank=4, alpha=8.0, targets=("decoder",))
        rebuilt = load_tokenizer(lora_job.start, CV, ema=False)
        add_lora(rebuilt, settings)
        load_lora_state_dict(rebuilt, adapters)
        torch.testing.assert_close(
            rebuilt(x).reconstructions,
            load_tokenizer(lora_job.checkpoint, ema=False)(x).reconstructions,
            rtol=0,
            atol=1e-5,
        )
        _, ema_adapters = read_lora_file(lora_job.checkpoint.with_name("iter_000000002_lora.safetensors"), ema=True)
        assert set(ema_adapters) == set(adapters) and all(
            torch.equal(trainer.ema.shadow[k], v) for k, v in ema_adapters.items()
        )


def test_jit_exports_use_the_merged_weights(lora_job: Job, tmp_path: Path) -> None:
    """The background exports and `vtok export-jit` of a LoRA checkpoint reproduce the adapted EMA network."""
    trainer = lora_job.trainer
    z = torch.randn(1, 16, 2, 4, 4, generator=torch.Generator().manual_seed(2))
    assert (
        vtok_main(
            [
                "export-jit",
                "--checkpoint",
                str(lora_job.checkpoint),
                "--output_dir",
                str(tmp_path),
                "--dtype",
                "float32",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    with torch.no_grad(), trainer.ema.swapped(trainer.network):
        expected = trainer.network.eval().decode(z)
    for path in (lora_job.checkpoint.with_name("iter_000000002_dec.jit"), tmp_path / "decoder.jit"):
        decoder = torch.jit.load(str(path))
        assert not any(".lora." in k for k in decoder.state_dict())
        with torch.no_grad():
            torch.testing.assert_close(decoder(z), expected, rtol=0, atol=1e-5)


def test_resuming_a_decoder_job_as_a_full_one_is_refused(decoder_job: Job, tmp_path: Path) -> None:
    job = tmp_path / "posttraining" / "debug" / "job" / "checkpoints"
    job.mkdir(parents=True)
    shutil.copy(decoder_job.checkpoint, job / decoder_job.checkpoint.name)
    (job / "latest_checkpoint.txt").write_text(decoder_job.checkpoint.name + "\n")
    with pytest.raises(ValueError, match=r"optimizer state is for \d+ parameters, this run trains \d+: model\.config"):
        make(tmp_path, "job", DV, "trainer.max_iter=3")


def test_decoder_mode_from_a_full_model_pt_keeps_the_decoder_moments(tmp_path: Path) -> None:
    """NVIDIA's model.pt has AdamW moments for every weight: a decoder-only run takes the decoder's, a LoRA run
    fresh ones, both with the file's iteration and schedule."""
    path = tmp_path / "model.pt"
    reference_model_pt(path, iteration=123)
    saved = torch.load(path, weights_only=True)["optimizer"]["state"]
    common = (f"checkpoint.load_path={path}", "checkpoint.load_training_state=true", "trainer.max_iter=124")
    decoder = make(tmp_path, "decoder", CV, *common, "model.config.trainable=decoder")
    names = [n for n, _ in decoder.network.named_parameters()]
    trained = [(n, p) for n, p in decoder.network.named_parameters() if p.requires_grad]
    for name, param in (trained[0], trained[-1]):  # the decoder's first weight, post_quant_conv's bias
        assert name.startswith(("decoder.", "post_quant_conv."))
        expected = saved[names.index(name)]["exp_avg"]
        assert torch.equal(decoder.optimizer.state[param]["exp_avg"], expected), name
    assert decoder.iteration == 123
    lora = make(tmp_path, "lora", CV, *common, "model.config.lora.rank=2")
    assert lora.iteration == 123 and not lora.optimizer.state
    assert "its moments are not used" in (lora.folder / "stdout.log").read_text()


def resume_matches(root: Path, model: str, *extra: str) -> tuple[Trainer, Trainer]:
    """A 3-iteration run and a 2+1 one (a restart from iter_2.pt): the logged loss after the restart must match."""
    common = ("checkpoint.save_iter=2", *FAST, *extra)
    straight = make(root, "straight", model, "trainer.max_iter=3", *common)
    straight.train()
    make(root, "resumed", model, "trainer.max_iter=2", *common).train()
    resumed = make(root, "resumed", model, "trainer.max_iter=3", *common)
    assert resumed.start_iteration == 2
    resumed.train()
    expected, got = logged_losses(straight.folder), logged_losses(resumed.folder)
    assert got[3] == expected[3]
    for (name, a), b in zip(straight.network.state_dict().items(), resumed.network.state_dict().values()):
        assert torch.equal(a, b), name
    for name, value in straight.ema.state().items():
        assert torch.equal(value, resumed.ema.state()[name]), name
    return straight, resumed


def test_resume_with_lora_adapters_is_exact(tmp_path: Path) -> None:
    straight, resumed = resume_matches(
        tmp_path,
        CV,
        "model.config.trainable=decoder",
        "model.config.lora.rank=2",
        "model.config.lora.targets=[decoder.up.0,decoder.conv_out]",
    )
    adapters = [k for k in resumed.network.state_dict() if is_lora_key(k)]
    assert adapters and all(
        torch.equal(straight.network.state_dict()[k], resumed.network.state_dict()[k]) for k in adapters
    )
    assert (
        f"LoRA: {len(adapters)} adapters and the {len(adapters) // 2} weights they adapt from"
        in (resumed.folder / "stdout.log").read_text()
    )


def test_resume_with_the_discriminator_is_exact(tmp_path: Path) -> None:
    straight, resumed = resume_matches(
        tmp_path,
        CV,
        "loss.adversarial.enabled=true",
        "loss.adversarial.lecam_weight=0.1",
        "loss.adversarial.warmup=3",
        "loss.adversarial.start_iter=1",
        *TINY_D,
    )
    for name, value in straight.adversarial.state_dict().items():  # discriminator and LeCam averages
        assert torch.equal(value, resumed.adversarial.state_dict()[name]), name
    a, b = straight.d_optimizer.state_dict(), resumed.d_optimizer.state_dict()
    for i in a["state"]:
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(a["state"][i][key], b["state"][i][key])
    assert straight.d_scheduler.last_epoch == resumed.d_scheduler.last_epoch == 2  # D steps from start_iter=1 on
    assert straight.d_optimizer.param_groups[0]["lr"] == resumed.d_optimizer.param_groups[0]["lr"]
    log = (resumed.folder / "stdout.log").read_text()
    assert "discriminator, its optimizer and schedule: from" in log and "| D " in log


def test_rank_zero_lora_is_a_plain_run(tmp_path: Path) -> None:
    plain = make(tmp_path, "plain", CV, "trainer.max_iter=2", "checkpoint.save_iter=2", *FAST)
    plain.train()
    rank0 = make(
        tmp_path,
        "rank0",
        CV,
        "trainer.max_iter=2",
        "checkpoint.save_iter=2",
        "model.config.lora.rank=0",
        "model.config.lora.targets=[decoder.conv_out]",
        *FAST,
    )
    rank0.train()
    assert logged_losses(rank0.folder) == logged_losses(plain.folder)
    a = torch.load(plain.checkpoint_dir / "iter_000000002.pt", weights_only=True)
    b = torch.load(rank0.checkpoint_dir / "iter_000000002.pt", weights_only=True)
    assert list(a["model"]) == list(b["model"]) and "vtok_lora" not in b
    assert all(torch.equal(v, b["model"][k]) for k, v in a["model"].items())
    assert not list(rank0.checkpoint_dir.glob("*_lora.safetensors"))


def test_adversarial_stage_on_a_fixed_batch(tmp_path: Path) -> None:
    """The discriminator learns to tell a fixed batch from its reconstruction; the first step's adaptive weight is
    the gradient-norm ratio computed by hand with two separate backward passes."""
    trainer = make(
        tmp_path,
        "fixed",
        CV,
        "trainer.max_iter=8",
        "loss.adversarial.enabled=true",
        "loss.adversarial.lr=2e-3",
        "loss.adversarial.weight=0.5",
        *TINY_D,
        *FAST,
    )
    x = next(iter(trainer.train_loader))["video"]
    trainer.batches = itertools.repeat(x)
    network, adversarial = trainer.network, trainer.adversarial
    last = network.decoder.conv_out[1].conv3d.weight
    grads = []
    for pick in ("rec", "adv"):
        network.zero_grad(set_to_none=True)
        output = network(x)
        losses, total = trainer.loss(x, output, 0)
        if pick == "adv":
            logits = adversarial.discriminator(output.reconstructions)
            total = torch.stack([generator_loss("hinge", v) for v in logits.values()]).mean()
        total.backward()
        grads.append(last.grad.clone())
    network.zero_grad(set_to_none=True)
    adversarial.discriminator.zero_grad(set_to_none=True)
    expected = 0.5 * grads[0].norm() / (grads[1].norm() + 1e-4)
    steps = [trainer.train_step()[0] for _ in range(8)]
    assert steps[0]["adaptive_weight"].item() == pytest.approx(expected.item(), rel=1e-5)
    d_losses = [float(s["d_loss"]) for s in steps]
    assert sum(d_losses[-3:]) / 3 < 0.8 * sum(d_losses[:3]) / 3, d_losses
    assert float(steps[-1]["d_logits_real"]) > float(steps[-1]["d_logits_fake"])
    assert {"adversarial", "d_grad_norm", "d_logits_real", "d_logits_fake"} <= set(steps[-1])


@pytest.mark.parametrize("precision", ["bf16_autocast", "bf16_pure"])
def test_adversarial_stage_in_bf16(tmp_path: Path, precision: str) -> None:
    trainer = make(
        tmp_path,
        precision,
        CV,
        "trainer.max_iter=1",
        f"trainer.precision={precision}",
        "loss.adversarial.enabled=true",
        "loss.adversarial.lecam_weight=0.01",
        "model.config.lora.rank=2",
        *TINY_D,
    )
    last = trainer.train()
    assert all(torch.isfinite(torch.tensor(last[k])) for k in ("train/total", "train/d_loss", "train/adaptive_weight"))
    assert trainer.adversarial.lecam_ema.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in trainer.adversarial.discriminator.parameters())


@pytest.fixture(scope="module")
def lpips_folder(tmp_path_factory) -> Path:
    torch.manual_seed(31)
    folder = tmp_path_factory.mktemp("lpips_weights")
    lpips = LPIPS()
    torch.save(lpips.net.state_dict(), folder / "vgg16.pth")
    torch.save({k: v.abs() for k, v in lpips.lin_state_dict().items()}, folder / "vgg.pth")
    return folder


def test_lpips_term_and_validation_lpips(tmp_path: Path, lpips_folder: Path) -> None:
    trainer = make(
        tmp_path,
        "lpips",
        CV,
        "trainer.max_iter=1",
        "loss.lpips.enabled=true",
        f"loss.lpips.weights={lpips_folder}",
        "loss.lpips.values=[0.5]",
        "trainer.run_validation=true",
        "trainer.validation_iter=1",
        *FAST,
    )
    last = trainer.train()
    assert last["train/lpips_vgg"] > 0
    values = trainer.validate()
    assert 0 < values["val/lpips"] and 0 < values["val/ema_lpips"] and "val/psnr" in values
    assert "loss terms: color, lpips_vgg" in (trainer.folder / "stdout.log").read_text()


def test_lpips_term_without_weights_fails_before_any_model_work(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("VTOK_LPIPS_WEIGHTS", raising=False)
    with pytest.raises(FileNotFoundError, match=r"loss\.lpips\.weights.*loss\.lpips\.enabled=false"):
        make(tmp_path, "no_lpips", CV, "loss.lpips.enabled=true")
    assert "job folder" in (tmp_path / "posttraining" / "debug" / "no_lpips" / "stdout.log").read_text()
    assert not (tmp_path / "posttraining" / "debug" / "no_lpips" / "checkpoints").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.config.trainable=decoders"], r"model\.config\.trainable: 'decoders' matches no parameter"),
        (["model.config.trainable=[decoder.up.9]"], r"model\.config\.trainable: 'decoder\.up\.9'"),
        (["model.config.lora.rank=-1"], r"model\.config\.lora\.rank must be an integer >= 0"),
        (["model.config.lora.rank=4", "model.config.lora.targets=[decodr]"], r"model\.config\.lora\.targets: 'decodr'"),
        (
            ["model.config.trainable=decoder", "model.config.lora.rank=4", "model.config.lora.targets=[encoder]"],
            r"model\.config\.lora\.targets selects encoder\..*model\.config\.trainable",
        ),
        (["model.config.lora.rank=4", "model.config.lora.dropout=1"], r"model\.config\.lora\.dropout"),
        (["loss.adversarial.discriminator=patch4d"], r"adversarial\.config\.discriminator: expected one of"),
        (["loss.adversarial.lr=0"], r"loss\.adversarial\.lr must be positive"),
        (["loss.adversarial.betas=[0.5,1.0]"], r"loss\.adversarial\.betas"),
        (
            ["loss.adversarial.enabled=true", "model.config.trainable=encoder"],
            r"loss\.adversarial\.adaptive_weight: .*decoder\.conv_out",
        ),
        (
            ["loss.adversarial.enabled=true", "loss.adversarial.discriminator_layers=4"],
            r"loss\.adversarial\.discriminator_layers=4: .* at least 48x48 pixels",
        ),
        (["loss.lpips.values=[0.1,0.2,0.3]"], r"lpips\.config: a weight schedule"),
        (["loss.lpips.dtype=float16"], r"loss\.lpips\.dtype must be one of"),
    ],
)
def test_mode_settings_fail_naming_the_key(overrides: list[str], message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        parse_train_args(arguments(tmp_path, "bad", CV, *overrides))


DISTRIBUTED = (
    "trainer.conv_kernels=conv3d",  # one kernel everywhere: a tuned table differs with the thread count and batch
    # Adam moves an element by ~lr whatever its gradient's size once |g| >> eps; an attention LoRA-down element whose
    # gradient cancels to ~1e-8 (= the default eps) then turns 1e-9 of summation-order noise into 0.1 lr. eps=1e-6
    # keeps such elements' steps proportional to their gradients, so the comparison measures the gradients.
    "optimizer.eps=1e-6",
    "trainer.max_iter=2",
    "checkpoint.save_iter=2",
    "trainer.grad_accum_iter=2",
    "model.config.lora.rank=2",
    "loss.adversarial.enabled=true",
    "loss.adversarial.lecam_weight=0.1",
    *TINY_D,
    *FAST,
)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Trainer:
    """The reference of the 2-process runs: one process, batch 2, the same global batch."""
    trainer = make(tmp_path_factory.mktemp("one_process"), "one", CV, *DISTRIBUTED, "dataloader_train.batch_size=2")
    trainer.train()
    return trainer


@pytest.mark.parametrize("parallelism, port", [("ddp", 29527), ("fsdp", 29528)])
def test_two_processes_match_one_with_lora_and_the_adversarial_stage(
    tmp_path: Path, parallelism: str, port: int, one_process: Trainer
) -> None:
    """LoRA on the decoder (base frozen, adaptive weight at the adapter) with the adversarial stage: 2 gloo
    processes of batch 1 equal one process of batch 2 in the losses, the adapters, their EMA, the discriminator
    and its LeCam averages."""
    overrides = arguments(
        tmp_path, "two", CV, *DISTRIBUTED, "dataloader_train.batch_size=1", f"trainer.parallelism={parallelism}"
    )
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}"]
    command += ["-m", "vtok.train", "--", *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    folder = tmp_path / "posttraining" / "debug" / "two"
    two, one = logged_losses(folder), logged_losses(one_process.folder)
    assert sorted(two) == [1, 2]
    for it in two:
        assert two[it] == pytest.approx(one[it], rel=1e-4, abs=1e-5)
    saved = torch.load(folder / "checkpoints" / "iter_000000002.pt", weights_only=True)
    single = one_process
    for name, value in saved["vtok_lora"]["adapters"].items():
        torch.testing.assert_close(value, single.network.state_dict()[name], rtol=1e-4, atol=1e-5)
    for name, value in saved["vtok_lora"]["ema_adapters"].items():
        torch.testing.assert_close(value, single.ema.shadow[name], rtol=1e-4, atol=1e-5)
    for name, value in saved["vtok_adversarial"]["model"].items():
        torch.testing.assert_close(value, single.adversarial.state_dict()[name], rtol=1e-4, atol=1e-5)
    assert len(saved["optimizer"]["state"]) == sum(p.requires_grad for p in single.network.parameters())
