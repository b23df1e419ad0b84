"""The demo: the whole post-training loop on this machine in minutes, with no GPU, account or download.

It generates textured, moving videos (a training and a held-out set), starts from a small tokenizer (random
weights at reduced width, exported like NVIDIA's release folder; or NVIDIA's released weights when
`checkpoints/Cosmos-Tokenize1-<model>` exists), post-trains it with the real trainer (the `Cosmos_Tokenize1_*`
experiment, overridden to small sizes), which writes checkpoints and TorchScript files, then autoencodes the
held-out videos before and after and compares them, as `vtok autoencode` and `vtok evaluate` do. It ends with a
table and the paths of what it made, including a loss-curve PNG and a PNG grid of input / before / after frames.

The output folder is marked as the demo's: a later demo replaces only a folder that holds that mark, and refuses
any other folder that is not empty.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..checkpoint import export_jit
from ..checkpoint.reader import check_checkpoint_file
from ..config import experiment_name, parse_train_args
from ..data.synthetic import write_textured_videos
from ..devices import resolve_device, resolve_dtype
from ..evaluation import Evaluation, evaluate_videos, mean_scores
from ..evaluation.figures import frame_grid, plot_loss_curve, read_scalars
from ..inference import Pipeline, autoencode_video, load_engine
from ..inference.per_file import Interrupted
from ..io import check_writable_folder, expand_patterns
from ..io.video import read_video
from ..losses import find_vgg16_weights
from ..networks import build_tokenizer
from ..training import train

MODELS = ("CV4x8x8-360p", "DV4x8x8-360p", "CV8x8x8-720p", "DV8x16x16-720p")
JOB = ("demo", "vtok")
MARK = ".vtok-demo"  # in the output folder: this folder is a demo's, and a later demo may replace it


@dataclass
class DemoSettings:
    """The demo's knobs (what `vtok demo --help` lists)."""

    output_dir: Path = Path("outputs/demo")
    model: str = "CV4x8x8-360p"
    channels: int = 24  # network width when starting from random weights (released models: 128)
    num_res_blocks: int = 1
    checkpoints: Path = Path("checkpoints")  # searched for NVIDIA's Cosmos-Tokenize1-<model> release
    iterations: int = 300
    batch_size: int = 2
    lr: float | None = None  # None: 3e-4 from random weights, NVIDIA's 1e-4 from released ones
    frames: int = 17
    size: int = 64
    train_videos: int = 8
    val_videos: int = 2
    video_frames: int = 33
    video_size: tuple[int, int] = (96, 128)
    seed: int = 0

    @property
    def release(self) -> Path | None:
        """NVIDIA's release of the chosen model under `checkpoints`, when it has been downloaded."""
        folder = self.checkpoints / f"Cosmos-Tokenize1-{self.model}"
        return folder if (folder / "model.pt").is_file() or (folder / "encoder.jit").is_file() else None

    def network_overrides(self) -> dict[str, object]:
        return {} if self.release else {"channels": self.channels, "num_res_blocks": self.num_res_blocks}

    def train_overrides(self, start: Path) -> list[str]:
        """The experiment of the chosen model with the demo's sizes, data and starting weights."""
        out, from_release = self.output_dir, self.release is not None
        lr = self.lr if self.lr is not None else (1e-4 if from_release else 3e-4)
        every = max(1, self.iterations // 30)
        argv = [
            f"experiment={experiment_name(self.model)}",
            f"job.output_root={out / 'runs'}",
            f"job.project={JOB[0]}",
            f"job.group={JOB[1]}",
            f"job.name={self.model}",
            f"checkpoint.load_path={start}",
            "checkpoint.load_training_state=false",
            f"trainer.max_iter={self.iterations}",
            f"trainer.logging_iter={every}",
            f"checkpoint.save_iter={self.iterations}",
            f"trainer.validation_iter={self.iterations}",
            f"trainer.seed={self.seed}",
            f"optimizer.lr={lr}",
            f"scheduler.warmup={max(1, self.iterations // 10)}",
            "model.config.ema.warmup=true",
            "checkpoint.jit.dtype=float32",
            "checkpoint.jit.input_shape=null",
            f"dataloader_train.batch_size={self.batch_size}",
        ]
        argv += [f"model.config.network.{k}={v}" for k, v in self.network_overrides().items()]
        if not from_release:  # from random weights, beta1 0.9 learned faster than NVIDIA's fine-tuning 0.5 (measured)
            argv.append("optimizer.betas=[0.9,0.999]")
        if find_vgg16_weights() is None:
            argv.append("loss.perceptual.enabled=false")
        for loader, split in (("dataloader_train", "train"), ("dataloader_val", "val")):
            argv += [
                f"{loader}.dataset.video_pattern={out / 'videos' / split / '*.mp4'}",
                f"{loader}.dataset.val_fraction=0",
                f"{loader}.dataset.num_video_frames={self.frames}",
                f"{loader}.dataset.crop_height={self.size}",
                f"{loader}.dataset.crop_width={self.size}",
                f"{loader}.num_workers=1",
            ]
        return argv


@dataclass
class DemoResult:
    """What the demo measured and made."""

    evaluation: Evaluation  # label A: after post-training, B: before
    train_seconds: float
    total_seconds: float
    made: dict[str, str] = field(default_factory=dict)  # label -> path(s)

    @property
    def psnr_before(self) -> float:
        return float(mean_scores(self.evaluation.model("B"))["psnr"])

    @property
    def psnr_after(self) -> float:
        return float(mean_scores(self.evaluation.model("A"))["psnr"])


def step(number: int, text: str) -> None:
    print(f"\n[{number}/6] {text}", flush=True)


def prepare_output_dir(folder: Path) -> None:
    """Make `folder` the demo's: replace an earlier demo's folder, refuse one that holds anything else."""
    check_writable_folder(folder)
    if folder.exists():
        if not folder.is_dir():
            raise ValueError(f"--output_dir {folder} is a file, not a folder")
        if (folder / MARK).is_file():
            print(f"replacing the previous demo in {folder}")
            shutil.rmtree(folder)
        elif any(folder.iterdir()):
            raise ValueError(
                f"--output_dir {folder} holds files that no demo made; give an empty or new folder "
                "(vtok never deletes what it did not create)"
            )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARK).write_text("made by `vtok demo`; a later demo may replace this folder\n")


def small_start(settings: DemoSettings, folder: Path) -> str:
    """Export a reduced-width tokenizer with random weights as a release-like folder; returns its description."""
    torch.manual_seed(settings.seed)
    tok = build_tokenizer(settings.model, **settings.network_overrides()).eval()
    export_jit(tok, folder, dtype=torch.float32)
    params = sum(p.numel() for p in tok.parameters())
    return f"{settings.model} at channels={settings.channels}, {params / 1e6:.1f}M parameters, random weights"


def summary_table(result: DemoResult, iterations: int) -> str:
    """PSNR/SSIM of the held-out videos before and after."""
    rows = [
        ("before", mean_scores(result.evaluation.model("B"))),
        (f"after {iterations} it", mean_scores(result.evaluation.model("A"))),
    ]
    lines = [f"{'held-out videos':<18} {'PSNR (dB)':>10} {'SSIM':>8}"]
    lines += [f"{label:<18} {m['psnr']:>10.2f} {m['ssim']:>8.4f}" for label, m in rows]
    return "\n".join(lines)


def run_demo(settings: DemoSettings) -> DemoResult:
    """Generate data, post-train, autoencode and evaluate before/after, draw the figures; prints as it goes."""
    started = time.perf_counter()
    out = settings.output_dir
    if settings.iterations < 1:
        raise ValueError(f"--iterations must be at least 1, got {settings.iterations}")
    release = settings.release
    start = release or out / "start"
    argv = settings.train_overrides(start)
    config, _ = parse_train_args(argv)  # a bad size fails here, naming the key, before anything is made or removed
    for file in sorted(release.iterdir()) if release else []:  # a bad release file fails before anything is made
        if file.suffix in (".pt", ".jit"):
            check_checkpoint_file(file)
    prepare_output_dir(out)

    step(1, f"generating {settings.train_videos} training and {settings.val_videos} held-out videos")
    height, width = settings.video_size
    for split, count, seed in (
        ("train", settings.train_videos, settings.seed),
        ("val", settings.val_videos, settings.seed + 1000),
    ):
        write_textured_videos(
            out / "videos" / split, count, settings.video_frames, height, width, seed=seed, prefix=split
        )
    val_files = expand_patterns(str(out / "videos" / "val" / "*.mp4"))

    step(2, "choosing the starting tokenizer")
    description = f"NVIDIA's released {settings.model} ({release})" if release else small_start(settings, start)
    print(f"starting from {description}")

    step(3, f"post-training for {settings.iterations} iterations with the trainer (python -m vtok.train)")
    train_started = time.perf_counter()
    print("python -m vtok.train " + " ".join(argv))
    if train(config).preempted:  # Ctrl-C or SIGTERM: the trainer saved; the rest needs the last iteration
        raise Interrupted(f"the demo stopped during training, which saved its last step in {out / 'runs'}")
    train_seconds = time.perf_counter() - train_started
    job = out / "runs" / JOB[0] / JOB[1] / settings.model
    final = job / "checkpoints" / f"iter_{settings.iterations:09d}"
    encoder, decoder = Path(f"{final}_enc.jit"), Path(f"{final}_dec.jit")
    before_checkpoint = start / "encoder.jit" if (start / "encoder.jit").is_file() else start

    step(4, "autoencoding the held-out videos before and after (as vtok autoencode)")
    device = resolve_device(None)
    dtype = resolve_dtype("auto", device)
    pipelines = {
        "A": Pipeline(load_engine(checkpoint_enc=encoder, checkpoint_dec=decoder, device=device, dtype=dtype)),
        "B": Pipeline(load_engine(before_checkpoint, device=device, dtype=dtype)),
    }
    for label, stage in (("B", "before"), ("A", "after")):
        for source in val_files:
            autoencode_video(pipelines[label], source, out / "reconstructions" / stage / source.name)

    step(5, "evaluating before (B) against after (A) (as vtok evaluate)")
    evaluation = evaluate_videos(
        val_files, pipelines, {"A": str(encoder), "B": str(before_checkpoint)}, out / "evaluation"
    )
    if evaluation.report.failed:
        raise ValueError(
            f"evaluation failed on {len(evaluation.report.failed)} held-out video(s): {evaluation.report.failed[0][1]}"
        )

    step(6, "drawing the loss curve and the frame grid")
    losses = read_scalars(job / "tensorboard", ("train/total", "train/color", "train/lpips"))
    if len(losses) == 2:  # the colour term alone: it is the total
        losses = {"train/total (L1 colour)": losses["train/total"]}
    curve = plot_loss_curve(losses, out / "loss_curve.png", title=f"{settings.model} post-training on generated videos")
    first_val = val_files[0]
    rows = {
        "input": read_video(first_val)[0],
        "before": read_video(out / "reconstructions" / "before" / first_val.name)[0],
        "after": read_video(out / "reconstructions" / "after" / first_val.name)[0],
    }
    grid = frame_grid(rows, out / "frames_input_before_after.png")
    made = {
        "checkpoint": f"{final}.pt",
        "TorchScript": f"{encoder}, {decoder}, {final}_ema.jit",
        "reconstructions": str(out / "reconstructions"),
        "metrics": str(out / "evaluation" / "metrics.csv"),
        "loss curve": str(curve),
        "frame grid": str(grid),
        "training log": str(job / "stdout.log"),
    }
    return DemoResult(evaluation, train_seconds, time.perf_counter() - started, made)
