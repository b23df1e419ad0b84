"""The post-training loop, with NVIDIA's fixes: current EMA in every save, validation at start, logging
(docs/design.md#training-flow).

Setup, in NVIDIA's order with vtok's devices, one named step each: the job folder and logging; the network and its
starting weights (job checkpoint, else `load_path`, else scratch) and the EMA; precision, AdamW and the warmup
schedule over the trainable parameters, with the loaded training state; data parallelism (DDP, or FSDP2 sharding
before the optimizer is built, `trainer.parallelism=fsdp`); the losses; the data; the outputs (saver, scalars).
Then:

    while iteration < max_iter:
        grad_accum micro-steps of forward, loss, backward (gradients all-reduced on the last one)
        clip (a non-finite norm skips the step), optimizer and scheduler step, iteration += 1, EMA update
        log every logging_iter, save every save_iter, validate every validation_iter
"""

from __future__ import annotations

import logging
import math
import random
import resource
import signal
import sys
import time
from collections.abc import Iterator
from functools import partial

import numpy as np
import torch
from tqdm import tqdm

from ..checkpoint.record import VtokRecord
from ..checkpoint.training_file import TrainingFile
from ..config.files import save_config
from ..config.schema import Config
from ..data import build_dataloader
from ..devices import cpu_has_native_bf16
from ..losses import build_losses
from ..networks.config import overrides_of
from ..networks.memory_format import default_memory_format, set_memory_format
from ..networks.tokenizer import Tokenizer, tokenizer_from_config
from .data_stream import training_batches, validation_batches
from .distributed import DistInfo, all_reduce_sum, barrier, no_sync, wrap_data_parallel
from .ema import EMA
from .faults import NonFiniteGuard, StopOnSignal
from .optim import build_optimizer, build_scheduler, export_optimizer_state, match_param_layouts, with_group_step
from .precision import Precision, resolve_precision
from .recompute import recompute_blocks
from .resume import (
    Source,
    check_same_network,
    data_position,
    find_source,
    load_network_and_ema,
    load_training_state,
)
from .run_log import Scalars, require_wandb, setup_logging, start_wandb, write_preview
from .saving import Checkpointer, JitExport, cpu_copy, export_template
from .sharding import full_model_state, full_optimizer_state, full_tensor, load_full_optimizer_state, shard
from .validation import evaluate

log = logging.getLogger(__name__)

JIT_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def peak_memory_gb(device: torch.device) -> float:
    """Peak memory of this process: CUDA allocations on a GPU, the resident set size on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def format_eta(seconds: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(seconds)) if seconds < 86400 else f"{seconds / 86400:.1f} d"


class Trainer:
    """One training run of a resolved config on this rank."""

    def __init__(self, config: Config, info: DistInfo) -> None:
        self.config = config
        self.info = info
        self.device = info.device
        self.folder = config.job.folder()
        self.checkpoint_dir = self.folder / "checkpoints"
        self.iteration = 0
        self.data_step = 0  # training micro-batches this job consumed, for resuming mid-epoch
        self.skipped_steps = 0
        self.preempted = False  # train() stopped early on SIGTERM or SIGINT, after saving
        self.stop_signal: int | None = None
        self.batches: Iterator[torch.Tensor] | None = None
        self._setup()

    # ---------------------------------------------------------------- setup
    def _setup(self) -> None:
        precision = self._prepare_job()
        source = self._build_network()
        self._build_optimizer(source, precision)
        del source  # its tensors (EMA, optimizer state) are in place now: free the file's copies
        self._build_losses()
        self._build_data()
        self._build_outputs()
        params = sum(p.numel() for p in self.network.parameters())
        parallel = "FSDP2" if self.fsdp else "DDP" if self.model is not self.network else "1 process"
        log.info(
            "%s: %.1fM parameters; global batch %d clips; %s",
            self.network.name,
            params / 1e6,
            self.global_batch,
            parallel,
        )

    def _prepare_job(self) -> str:
        """The job folder (rank 0), the resolved config in it, logging, device-wide switches; returns the precision."""
        config, info, trainer = self.config, self.info, self.config.trainer
        precision = resolve_precision(trainer.precision, self.device)
        self.fsdp = trainer.parallelism == "fsdp" and info.distributed and info.world_size > 1
        if self.fsdp and precision == "bf16_pure":
            raise ValueError(
                "trainer.parallelism=fsdp works with trainer.precision=bf16_autocast or fp32, not bf16_pure"
            )
        if info.is_main:
            self.folder.mkdir(parents=True, exist_ok=True)
            save_config(config, self.folder)
        setup_logging(self.folder if info.is_main else None, info.is_main)
        log.info(
            "job folder %s; %d process(es) on %s; precision %s%s",
            self.folder,
            info.world_size,
            self.device.type,
            precision,
            " (auto)" if trainer.precision == "auto" else "",
        )
        if trainer.wandb and info.is_main:
            require_wandb()
        if self.device.type == "cpu" and precision != "fp32" and not cpu_has_native_bf16():
            log.warning(
                "this CPU has no native bf16 (AMX / AVX512-BF16): bf16 is emulated and slow; "
                "trainer.precision=fp32 is faster here"
            )
        if self.device.type == "cuda" and trainer.tf32:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True
        return precision

    def _build_network(self) -> Source:
        """The network with its starting weights and the EMA, in its memory layout (sharded under FSDP2)."""
        config, trainer = self.config, self.config.trainer
        name = config.model.config.network_name
        source = find_source(self.checkpoint_dir, config.checkpoint, name)  # a bad file fails before any model work
        seed_everything(trainer.seed)  # one initialization on every rank
        self.network: Tokenizer = tokenizer_from_config(config.network, name)
        self.network.to(self.device)
        ema = config.model.config.ema
        self.ema = EMA(self.network, ema.beta, ema.warmup) if ema.enabled else None
        check_same_network(source, config.checkpoint, self.network, name, config.network)
        load_network_and_ema(source, self.network, self.ema, config.checkpoint.strict_resume)
        seed_everything(trainer.seed + self.info.rank)
        if trainer.activation_checkpointing:
            log.info("activation checkpointing on %d blocks", recompute_blocks(self.network))
        if trainer.channels_last and not self.fsdp:
            set_memory_format(self.network, default_memory_format(True, self.device))
        if self.fsdp:
            shard(self.network)
            if self.ema is not None:
                self.ema.shard_like(self.network)
        return source

    def _build_optimizer(self, source: Source, precision: str) -> None:
        """Precision, AdamW and the LR schedule, the loaded training state, and the data-parallel wrapper."""
        config = self.config
        self.precision = Precision(precision, self.network, self.device)
        self.optimizer = build_optimizer(self.precision.optimizer_params(), config.optimizer, self.device)
        self.scheduler = build_scheduler(self.optimizer, config.scheduler)
        load_optimizer = partial(load_full_optimizer_state, self.network, self.optimizer) if self.fsdp else None
        self.iteration = self.start_iteration = load_training_state(
            source, config.checkpoint, config.optimizer, self.optimizer, self.scheduler, load_optimizer
        )
        match_param_layouts(self.optimizer)
        self.data_step = data_position(source)
        if config.trainer.compile:
            if self.device.type == "cuda":
                self.network.compile()
            else:
                log.info("trainer.compile ignored on the CPU")
        self.model = self.network if self.fsdp else wrap_data_parallel(self.network, self.info)

    def _build_losses(self) -> None:
        config = self.config
        loss_spec = config.model.config.loss
        self.loss = build_losses(
            loss_spec.to_loss_config(),
            loss_spec.on_missing_vgg_weights,
            config.network.temporal_compression,
            self.device,
        ).to(self.device)
        terms = [t for t in self.loss.terms if t != "kl" or config.network.formulation == "VAE"]
        log.info("loss terms: %s", ", ".join(terms))

    def _build_data(self) -> None:
        config, info, seed = self.config, self.info, self.config.trainer.seed
        self.train_loader = build_dataloader(config.dataloader_train, "train", info.rank, info.world_size, seed)
        self.val_loader = (
            build_dataloader(config.dataloader_val, "val", info.rank, info.world_size, seed)
            if config.trainer.run_validation
            else None
        )
        self.codebook_size = self.network.codebook_size if config.network.is_discrete else None

    def _build_outputs(self) -> None:
        """Rank 0's saver (with the jit exporter when there is an EMA to export) and scalar writers."""
        config, info = self.config, self.info
        name = config.model.config.network_name
        jit = None
        if info.is_main and config.checkpoint.jit.enabled and self.ema is not None:
            shape = config.checkpoint.jit.input_shape
            jit = JitExport(
                export_template(lambda: tokenizer_from_config(config.network, name)),
                tuple(shape) if shape else None,
                JIT_DTYPES[config.checkpoint.jit.dtype],
            )
        self.checkpointer = Checkpointer(self.checkpoint_dir, config.checkpoint, jit) if info.is_main else None
        job = config.job
        wandb_run = (
            start_wandb(self.folder, job.project, job.group, job.name)
            if config.trainer.wandb and info.is_main
            else None
        )
        self.scalars = Scalars(self.folder, config.trainer.tensorboard, wandb_run) if info.is_main else None

    @property
    def global_batch(self) -> int:
        trainer = self.config.trainer
        return self.config.dataloader_train.batch_size * trainer.grad_accum_iter * self.info.world_size

    # ---------------------------------------------------------------- the loop
    def train(self) -> dict[str, float]:
        """Train up to `trainer.max_iter`; returns the last logged scalars."""
        trainer = self.config.trainer
        if self.batches is None:
            self.batches = training_batches(self.train_loader, self.data_step, trainer.grad_accum_iter)
        stop, guard = StopOnSignal(self.info), NonFiniteGuard(trainer.max_nonfinite_steps)
        if trainer.run_validation and trainer.validate_at_start:
            self.validate()
        bar = tqdm(
            total=trainer.max_iter,
            initial=self.iteration,
            desc="train",
            unit="it",
            dynamic_ncols=True,
            disable=not (self.info.is_main and sys.stderr.isatty()),
        )
        window: list[tuple[dict[str, torch.Tensor], torch.Tensor, float]] = []
        last: dict[str, float] = {}
        stop.install()
        try:
            while self.iteration < trainer.max_iter:
                start = time.perf_counter()
                losses, grad_norm = self.train_step()
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                window.append((losses, grad_norm, time.perf_counter() - start))
                bar.update(1)
                guard.check(grad_norm, self.iteration, getattr(self.batches, "recent_files", ()), self.checkpoint_dir)
                if self.iteration % trainer.logging_iter == 0 or self.iteration == trainer.max_iter:
                    last = self.log_window(window)
                    bar.set_postfix(loss=f"{last['train/total']:.4f}")
                    window = []
                if self.iteration % self.config.checkpoint.save_iter == 0:
                    self.save()
                if stop.agreed():
                    self.preempted = True
                    self.stop_signal = stop.signal or signal.SIGTERM  # another rank's signal: SIGTERM's meaning
                    log.warning(
                        "iteration %d: asked to stop (%s); saving and exiting, rerun the same command to resume",
                        self.iteration,
                        signal.Signals(self.stop_signal).name,
                    )
                    break
                if trainer.run_validation and self.iteration % trainer.validation_iter == 0:
                    self.validate()
            if self.iteration > self.start_iteration and self.iteration % self.config.checkpoint.save_iter:
                self.save()
        finally:
            stop.uninstall()
            bar.close()
            if self.checkpointer is not None:
                self.checkpointer.join()
            if self.scalars is not None:
                self.scalars.close()
        if self.skipped_steps:
            log.warning("%d optimizer step(s) skipped for a non-finite gradient norm", self.skipped_steps)
        return last

    def train_step(self) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """One optimizer step over `grad_accum_iter` micro-batches; returns (mean loss terms, gradient norm)."""
        accum = self.config.trainer.grad_accum_iter
        totals: dict[str, torch.Tensor] = {}
        self.model.train()
        for micro in range(accum):
            x = next(self.batches).to(self.device, non_blocking=True)
            self.data_step += 1
            if self.fsdp:
                self.network.set_requires_gradient_sync(micro == accum - 1)
            with no_sync(self.model, skip=micro < accum - 1):
                with self.precision.autocast():
                    output = self.model(self.precision.cast_input(self.loss.network_input(x)))
                losses, total = self.loss(x, output, self.iteration)
                (total / accum).backward()
            for key, value in {**losses, "total": total}.items():
                totals[key] = totals.get(key, 0) + value.detach().float() / accum
        self.precision.grads_to_masters()
        params = self.precision.optimizer_params()
        max_norm = self.config.trainer.clip_grad_norm or math.inf
        grad_norm = full_tensor(torch.nn.utils.clip_grad_norm_(params, max_norm))
        if torch.isfinite(grad_norm):
            self.optimizer.step()
        else:
            self.skipped_steps += 1
            log.warning("iteration %d: gradient norm %s, step skipped", self.iteration, float(grad_norm))
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.precision.masters_to_network()
        self.iteration += 1
        if self.ema is not None:
            self.ema.update(self.precision.named_master_params())
        return totals, grad_norm.detach()

    # ---------------------------------------------------------------- logging, saving, validation
    def log_window(self, window: list[tuple[dict[str, torch.Tensor], torch.Tensor, float]]) -> dict[str, float]:
        """Average the window's losses over steps and ranks; log one line and the scalars."""
        keys = list(window[0][0])
        stacked = torch.stack([torch.stack([w[0][k] for k in keys]) for w in window]).mean(0)
        means = all_reduce_sum(stacked.to(self.device), self.info) / self.info.world_size
        step_time = sum(w[2] for w in window) / len(window)
        values = {f"train/{k}": float(v) for k, v in zip(keys, means)}
        values.update(
            {
                "train/grad_norm": float(torch.stack([w[1] for w in window]).float().mean()),
                "train/lr": float(self.optimizer.param_groups[0]["lr"]),
                "perf/step_time_s": step_time,
                "perf/clips_per_s": self.global_batch / step_time,
                "perf/peak_memory_gb": peak_memory_gb(self.device),
            }
        )
        terms = " ".join(f"{k} {float(v):.4f}" for k, v in zip(keys, means) if k != "total")
        eta = step_time * (self.config.trainer.max_iter - self.iteration)
        log.info(
            "it %d/%d | loss %.6f (%s) | lr %.3g | grad %.3g | %.3f s/it %.3g clips/s | peak %.2f GB | eta %s",
            self.iteration,
            self.config.trainer.max_iter,
            values["train/total"],
            terms,
            values["train/lr"],
            values["train/grad_norm"],
            step_time,
            values["perf/clips_per_s"],
            values["perf/peak_memory_gb"],
            format_eta(eta),
        )
        if self.scalars is not None:
            self.scalars.add(values, self.iteration)
        return values

    def full_state(self) -> tuple[dict, dict, dict | None]:
        """(network state, optimizer state, EMA shadow), whole: gathered by every rank under FSDP, for rank 0."""
        shadow = self.ema.shadow if self.ema is not None else None
        if self.fsdp:
            return (
                full_model_state(self.network),
                with_group_step(full_optimizer_state(self.network, self.optimizer)),
                {k: full_tensor(v) for k, v in shadow.items()} if shadow is not None else None,
            )
        if self.checkpointer is None:
            return {}, {}, None
        return self.network.state_dict(), export_optimizer_state(self.optimizer), shadow

    def save(self) -> None:
        """`iter_N.pt` (+ jits from the EMA) on rank 0, written in the background."""
        network_state, optimizer_state, shadow = self.full_state()
        if self.checkpointer is None:
            return
        name = self.config.model.config.network_name
        record = VtokRecord(
            name=name,
            overrides=overrides_of(name, self.config.network) if name else {},
            data_step=self.data_step,
            world_size=self.info.world_size,
            ema_updates=self.ema.updates if self.ema is not None else 0,
        )
        file = TrainingFile(
            network=network_state,
            ema=shadow,
            optimizer=optimizer_state,
            scheduler=self.scheduler.state_dict(),
            iteration=self.iteration,
            record=record,
        )
        self.checkpointer.save(cpu_copy(file))

    def validate(self) -> dict[str, float]:
        """PSNR/SSIM (and code usage) of the regular and the EMA weights on the held-out batches."""
        if self.val_loader is None:
            return {}
        limit = self.config.trainer.max_val_iter
        args = (self.precision.autocast, self.precision.cast_input, self.codebook_size, self.info)
        batches = [x.to(self.device) for x in validation_batches(self.val_loader, limit)]
        if not batches:
            log.warning("validation skipped: the validation split has no clips for this rank")
            return {}
        values, sample = evaluate(self.network, batches, *args, prefix="val/")
        if self.ema is not None:
            with self.ema.swapped(self.network):
                ema_values, ema_sample = evaluate(self.network, batches, *args, prefix="val/ema_")
            values.update(ema_values)
        log.info("validation at %d: %s", self.iteration, " | ".join(f"{k[4:]} {v:.4f}" for k, v in values.items()))
        if self.scalars is not None:
            self.scalars.add(values, self.iteration)
            if sample is not None:
                self.scalars.add_clip("val/reconstruction", *sample, self.iteration)
                if self.ema is not None:
                    self.scalars.add_clip("val/ema_reconstruction", *ema_sample, self.iteration)
                clips = [*sample] + ([ema_sample[1]] if self.ema is not None else [])
                write_preview(self.folder / "previews" / f"iter_{self.iteration:09d}.mp4", clips)
        barrier(self.info)
        return values
