"""The post-training loop, with NVIDIA's fixes: current EMA in every save, validation at start, logging
(docs/design.md#training-flow).

Setup, in NVIDIA's order with vtok's devices, one named step each: the job folder and logging; the network, what
of it trains (`model.config.trainable`, LoRA adapters) and its starting weights (job checkpoint, else `load_path`,
else scratch) and the EMA; precision, AdamW and the warmup schedule over the trainable parameters, with the loaded
training state; data parallelism (DDP, or FSDP2 sharding before the optimizer is built,
`trainer.parallelism=fsdp`); the losses; the adversarial stage (a discriminator replicated with DDP, its own AdamW
and schedule); the data; the outputs (saver, scalars). Then:

    while iteration < max_iter:
        grad_accum micro-steps of forward, loss (+ the generator term), backward (gradients all-reduced on the
        last one), then the discriminator's loss on the detached reconstruction and its backward
        clip (a non-finite norm skips the step), optimizer and scheduler step, discriminator step, iteration += 1,
        EMA update
        log every logging_iter, save every save_iter, validate every validation_iter
"""

from __future__ import annotations

import copy
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
from ..config.schema import Config, OptimizerConfig, SchedulerConfig
from ..data import build_dataloader
from ..devices import cpu_has_native_bf16
from ..losses import build_adversarial, build_losses
from ..losses.adversarial import reconstruction_loss
from ..losses.lpips_term import require_lpips_weights
from ..metrics.lpips import LPIPS, find_lpips_weights
from ..networks.config import overrides_of
from ..networks.lora import lora_parameter_count
from ..networks.tokenizer import Tokenizer, tokenizer_from_config
from ..networks.trainable import apply_trainable, last_layer_weight
from .conv_tuning import choose_kernels
from .data_stream import training_batches, validation_batches
from .distributed import DistInfo, all_reduce_sum, barrier, mean_over_ranks, no_sync, wrap_data_parallel
from .ema import EMA
from .faults import NonFiniteGuard, StopOnSignal
from .layout import choose_layout, network_input_shape, training_clip_shape
from .optim import (
    adapt_scheduler_state,
    build_optimizer,
    build_scheduler,
    export_optimizer_state,
    match_param_layouts,
    with_group_step,
)
from .precision import Precision, resolve_precision
from .recompute import recompute_blocks
from .resume import (
    Source,
    check_same_network,
    continues_training,
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
DISCRIMINATOR_SEED_OFFSET = 7919  # the discriminator's initialization draws from its own seed, the same on every rank


def is_adversarial_stat(key: str) -> bool:
    """Scalars of the adversarial stage that are not loss terms (logged apart from them)."""
    return key.startswith("d_") or key == "adaptive_weight"


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
        source = self._build_network(precision)
        self._build_optimizer(source, precision)
        self._build_losses()
        self._build_adversarial(source)
        del source  # its tensors (EMA, optimizer states) are in place now: free the file's copies
        self._build_data()
        self._build_outputs()
        params = sum(p.numel() for p in self.network.parameters())
        trainable = sum(p.numel() for p in self.network.parameters() if p.requires_grad)
        parallel = "FSDP2" if self.fsdp else "DDP" if self.model is not self.network else "1 process"
        log.info(
            "%s: %.1fM parameters, %.2fM trainable; global batch %d clips; %s",
            self.network.name,
            params / 1e6,
            trainable / 1e6,
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
        lpips = config.model.config.loss.config.lpips.config
        if lpips.needed:
            require_lpips_weights(lpips.weights)  # before any model work
        return precision

    def _build_network(self, precision: str) -> Source:
        """The network, what of it trains (frozen parts, LoRA adapters), its starting weights and the EMA, in its
        memory layout (sharded under FSDP2)."""
        config, trainer, model = self.config, self.config.trainer, self.config.model.config
        name = model.network_name
        source = find_source(self.checkpoint_dir, config.checkpoint, name)  # a bad file fails before any model work
        seed_everything(trainer.seed)  # one initialization on every rank
        self.network: Tokenizer = tokenizer_from_config(config.network, name)
        self.network.to(self.device)
        self.lora = model.lora.settings()
        trainable = apply_trainable(self.network, model.trainable, self.lora)  # before the EMA, optimizer, wrappers
        if model.trainable != "all" or self.lora.enabled:
            log.info(
                "trainable: %s, %d tensors%s",
                model.trainable,
                len(trainable),
                f"; LoRA rank {self.lora.rank} (scale {self.lora.scale:g}) on {', '.join(self.lora.targets)}, "
                f"{lora_parameter_count(self.network) / 1e6:.3f}M adapter parameters"
                if self.lora.enabled
                else "",
            )
        ema = model.ema
        self.ema = EMA(self.network, ema.beta, ema.warmup) if ema.enabled else None
        check_same_network(source, config.checkpoint, self.network, name, config.network)
        continues = continues_training(source, config.checkpoint)
        load_network_and_ema(source, self.network, self.ema, config.checkpoint.strict_resume, continues)
        seed_everything(trainer.seed + self.info.rank)
        if trainer.activation_checkpointing:
            log.info("activation checkpointing on %d blocks", recompute_blocks(self.network))
        consistency = config.model.config.loss.to_loss_config().video_consistency
        shape = network_input_shape(
            training_clip_shape(config.dataloader_train),
            consistency.num_frames if consistency.enabled else 0,
            consistency.step,
        )
        autocast = precision == "bf16_autocast"
        if trainer.channels_last and not self.fsdp:
            choose_layout(
                trainer.channels_last, self.network, config.network.to_dict(), shape, self.device, self.info, autocast
            )
        setup = {"precision": precision, "activation_checkpointing": trainer.activation_checkpointing}
        choose_kernels(
            trainer.conv_kernels,
            self.network,
            {**config.network.to_dict(), **setup},
            shape,
            self.device,
            self.info,
            autocast,
            skip="bf16_pure" if precision == "bf16_pure" else "",
        )
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
            source, config.checkpoint, config.optimizer, self.optimizer, self.scheduler, load_optimizer, self.network
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
        if loss_spec.config.adversarial.config.enabled:
            terms.append("adversarial")
        log.info("loss terms: %s", ", ".join(terms))
        self.val_lpips = self._validation_lpips() if config.trainer.run_validation else None

    def _validation_lpips(self) -> LPIPS | None:
        """The LPIPS model validation reports with: the training term's (in float32), else one from the local
        weights (`loss.lpips.weights`, `$VTOK_LPIPS_WEIGHTS`) when they are there, else None."""
        if self.loss.lpips is not None:
            model = self.loss.lpips.lpips
            return model if next(model.parameters()).dtype == torch.float32 else copy.deepcopy(model).float()
        files = find_lpips_weights(self.config.model.config.loss.config.lpips.config.weights)
        return LPIPS.from_files(*files).to(self.device) if files is not None else None

    def _build_adversarial(self, source: Source) -> None:
        """The discriminator (initialized alike on every rank, replicated with DDP), its AdamW and LR warmup, and
        their state when the run continues the file's training."""
        config, info = self.config, self.info
        settings = config.model.config.loss.config.adversarial.config
        self.adversarial = self.d_model = self.d_optimizer = self.d_scheduler = None
        if not settings.enabled:
            return
        average = partial(mean_over_ranks, info=info) if info.distributed and info.world_size > 1 else None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.trainer.seed + DISCRIMINATOR_SEED_OFFSET)
            adversarial = build_adversarial(settings, average)
        self.adversarial = adversarial.to(self.device).train()
        self.d_optimizer = build_optimizer(
            self.adversarial.discriminator.parameters(),
            OptimizerConfig(lr=settings.lr, betas=settings.betas, weight_decay=settings.weight_decay),
            self.device,
        )
        self.d_scheduler = build_scheduler(self.d_optimizer, SchedulerConfig(warmup=settings.warmup))
        entry = source.file.adversarial
        if entry and continues_training(source, config.checkpoint):
            try:
                self.adversarial.load_state_dict(entry["model"])
            except (KeyError, RuntimeError) as err:
                raise ValueError(
                    f"{source.path}'s discriminator does not fit this one (loss.adversarial.discriminator, "
                    f"discriminator_channels, discriminator_layers, spectral_norm differ from the run that wrote it): "
                    f"{str(err).splitlines()[0]}"
                ) from None
            self.d_optimizer.load_state_dict(entry["optimizer"])
            self.d_scheduler.load_state_dict(adapt_scheduler_state(entry["scheduler"]))
            log.info("discriminator, its optimizer and schedule: from %s", source.path)
        else:
            log.info("discriminator: new (%s)", settings.discriminator)
        self.d_model = wrap_data_parallel(self.adversarial.discriminator, info)
        log.info(
            "adversarial stage from iteration %d: %s discriminator, %.2fM parameters, %s loss, weight %g%s",
            settings.start_iter,
            settings.discriminator,
            sum(p.numel() for p in self.adversarial.discriminator.parameters()) / 1e6,
            settings.loss,
            settings.weight,
            " x adaptive" if settings.adaptive_weight else "",
        )

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
        checkpoints = self.checkpoint_dir, config.checkpoint, jit, self.lora
        self.checkpointer = Checkpointer(*checkpoints) if info.is_main else None
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
        """One optimizer step over `grad_accum_iter` micro-batches; returns (mean loss terms and adversarial
        statistics, gradient norm)."""
        accum = self.config.trainer.grad_accum_iter
        totals: dict[str, torch.Tensor] = {}
        adversarial = self.adversarial is not None and self.adversarial.active(self.iteration)
        self.model.train()
        for micro in range(accum):
            x = next(self.batches).to(self.device, non_blocking=True)
            self.data_step += 1
            last_micro = micro == accum - 1
            if self.fsdp:
                self.network.set_requires_gradient_sync(last_micro)
            stats: dict[str, torch.Tensor] = {}
            inputs = self.loss.network_input(x)
            with no_sync(self.model, skip=not last_micro):
                with self.precision.autocast():
                    output = self.model(self.precision.cast_input(inputs))
                losses, total = self.loss(x, output, self.iteration)
                if adversarial:
                    total = total + self._generator_term(output.reconstructions, losses, stats)
                (total / accum).backward()
            if adversarial:
                self._discriminator_backward(inputs, output.reconstructions, accum, last_micro, stats)
            for key, value in {**losses, "total": total, **stats}.items():
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
        if adversarial:
            totals["d_grad_norm"] = self._discriminator_step()
        self.iteration += 1
        if self.ema is not None:
            self.ema.update(self.precision.named_master_params())
        return totals, grad_norm.detach()

    def _generator_term(
        self, fake: torch.Tensor, losses: dict[str, torch.Tensor], stats: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """The weighted generator loss (added to `losses` as "adversarial", its weight to `stats`). The adaptive
        weight compares it with the reconstruction terms (all but KL) at the decoder's last layer, read after the
        forward (FSDP2's gathered weight)."""
        rec_loss = reconstruction_loss(losses)
        last = last_layer_weight(self.network) if self.adversarial.use_adaptive_weight else None
        with self.precision.discriminator_autocast():
            term, weight = self.adversarial.generator_term(fake, rec_loss, last)
        losses["adversarial"] = term
        stats["adaptive_weight"] = weight.detach()
        return term

    def _discriminator_backward(
        self, real: torch.Tensor, fake: torch.Tensor, accum: int, last_micro: bool, stats: dict[str, torch.Tensor]
    ) -> None:
        """The discriminator's loss on real clips and detached reconstructions, backpropagated into its gradients
        (all-reduced by its DDP wrapper on the last micro-batch)."""
        with no_sync(self.d_model, skip=not last_micro):
            with self.precision.discriminator_autocast():
                loss, d_stats = self.adversarial.discriminator_step(real, fake.detach(), discriminator=self.d_model)
            (loss / accum).backward()
        stats.update({key if key.startswith("d_") else f"d_{key}": value for key, value in d_stats.items()})

    def _discriminator_step(self) -> torch.Tensor:
        """The discriminator's optimizer and schedule step (skipped on a non-finite gradient); its gradient norm."""
        params = list(self.adversarial.discriminator.parameters())
        norm = torch.nn.utils.clip_grad_norm_(params, math.inf)
        if torch.isfinite(norm):
            self.d_optimizer.step()
        else:
            log.warning("iteration %d: discriminator gradient norm %s, its step skipped", self.iteration, float(norm))
        self.d_optimizer.zero_grad(set_to_none=True)
        self.d_scheduler.step()
        return norm.detach()

    # ---------------------------------------------------------------- logging, saving, validation
    def log_window(self, window: list[tuple[dict[str, torch.Tensor], torch.Tensor, float]]) -> dict[str, float]:
        """Average the window's losses over steps and ranks; log one line and the scalars. A key some steps lack
        (the adversarial stage's, before `start_iter`) is averaged over the steps that have it."""
        keys = list(dict.fromkeys(k for w in window for k in w[0]))
        stacked = torch.stack([torch.stack([w[0][k] for w in window if k in w[0]]).mean() for k in keys])
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
        if self.d_optimizer is not None:
            values["train/d_lr"] = float(self.d_optimizer.param_groups[0]["lr"])
        terms = " ".join(
            f"{k} {float(v):.4f}" for k, v in zip(keys, means) if k != "total" and not is_adversarial_stat(k)
        )
        if "d_loss" in keys:
            terms += (
                f" | D {values['train/d_loss']:.4f} logits real {values['train/d_logits_real']:.3f} "
                f"fake {values['train/d_logits_fake']:.3f} | adaptive weight {values['train/adaptive_weight']:.4g}"
            )
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
        """(network state, optimizer state, EMA weights), whole (with LoRA, unmerged: the saver merges them):
        gathered by every rank under FSDP, for rank 0."""
        ema = self.ema.state() if self.ema is not None else None
        if self.fsdp:
            return (
                full_model_state(self.network),
                with_group_step(full_optimizer_state(self.network, self.optimizer)),
                {k: full_tensor(v) for k, v in ema.items()} if ema is not None else None,
            )
        if self.checkpointer is None:
            return {}, {}, None
        return self.network.state_dict(), export_optimizer_state(self.optimizer), ema

    def adversarial_state(self) -> dict | None:
        """The discriminator with its LeCam state, its optimizer and its schedule (replicated: rank 0's)."""
        if self.adversarial is None:
            return None
        return {
            "model": self.adversarial.state_dict(),
            "optimizer": self.d_optimizer.state_dict(),
            "scheduler": self.d_scheduler.state_dict(),
        }

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
            adversarial=self.adversarial_state(),
        )
        self.checkpointer.save(cpu_copy(file))

    def validate(self) -> dict[str, float]:
        """PSNR/SSIM (LPIPS with its weights, code usage for FSQ) of the regular and EMA weights on held-out batches."""
        if self.val_loader is None:
            return {}
        limit = self.config.trainer.max_val_iter
        args = (self.precision.autocast, self.precision.cast_input, self.codebook_size, self.info)
        batches = [x.to(self.device) for x in validation_batches(self.val_loader, limit)]
        if not batches:
            log.warning("validation skipped: the validation split has no clips for this rank")
            return {}
        values, sample = evaluate(self.network, batches, *args, prefix="val/", lpips=self.val_lpips)
        if self.ema is not None:
            with self.ema.swapped(self.network):
                ema_values, ema_sample = evaluate(self.network, batches, *args, prefix="val/ema_", lpips=self.val_lpips)
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
