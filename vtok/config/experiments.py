"""Named experiments: NVIDIA's `video_basic`, the four Tokenize1 HDVILA post-training runs and their mock variants.

The HDVILA experiments carry the reference's settings: the released network, `hdvila_video720`
or `hdvila_video360` data, crop_height 256, 121 frames for CV8x8x8 and 49 for the others, batch 1, the
released `model.pt` loaded strictly with its training state. Note (docs/design.md#resume-order): with
`load_training_state=True` the optimizer's lr/betas/weight decay and the iteration come from the file
(the schedule and `trainer.max_iter` count from the pretrained iteration). Set
`checkpoint.load_optimizer_hparams=false` to keep the config's hyper-parameters, or
`checkpoint.load_training_state=false` to start the count at 0.

`mock_<name>` runs the same network on synthetic clips for 2 iterations (NVIDIA's debug job). Unlike NVIDIA's,
it needs no downloaded file: `checkpoint.load_path` is null (add `checkpoint.load_path=checkpoints/
Cosmos-Tokenize1-<model>/model.pt` to start from released weights) and the perceptual term is skipped with a
warning when the VGG16 weights are absent. Its job name ends in `${now:...}` as NVIDIA's, so every smoke
run gets a fresh folder; it uses 2 loader workers instead of 8 to stay light on a laptop.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from ..data.config import DatasetConfig, LoaderConfig
from ..networks.config import get_config
from .schema import Config, JobConfig, ModelConfig, ModelSpec

TOKENIZE1_MODELS = ("CV8x8x8-720p", "DV8x16x16-720p", "CV4x8x8-360p", "DV4x8x8-360p")
JIT_INPUT_SHAPE = (1, 3, 17, 512, 512)
NOW = "${now:%Y-%m-%d}_${now:%H-%M-%S}"


def _loader(name: str, frames: int, crop_height: int, num_workers: int = 8) -> LoaderConfig:
    dataset = DatasetConfig(name=name, num_video_frames=frames, crop_height=crop_height)
    return LoaderConfig(batch_size=1, num_workers=num_workers, dataset=dataset)


def video_basic() -> Config:
    """NVIDIA's `video_basic`: CV8x8x8 from scratch on mock 720p data, L1 + 0.1 perceptual from iteration 0."""
    config = Config(job=JobConfig(project="posttraining", group="tokenizer", name="basic"))
    terms = config.model.config.loss.config
    perceptual = terms.perceptual.config
    perceptual.lpips_boundaries, perceptual.lpips_values = [0], [0.1]
    perceptual.gram_enabled, perceptual.gram_boundaries = False, [0]
    consistency = terms.video_consistency.config
    consistency.enabled, consistency.boundaries, consistency.values = False, [0], [1.0]
    consistency.num_frames, consistency.step = 32, 8
    flow = terms.flow.config
    flow.enabled, flow.boundaries, flow.values, flow.scale = False, [1_000_000], [0.0, 0.01], 2
    config.dataloader_train = _loader("mock_video720", frames=49, crop_height=256)
    config.dataloader_val = _loader("mock_video720", frames=49, crop_height=720)
    config.checkpoint.load_path = None
    config.checkpoint.jit.input_shape = JIT_INPUT_SHAPE
    return config


def experiment_name(model: str) -> str:
    """`CV8x8x8-720p` -> `Cosmos_Tokenize1_CV8x8x8_720p_HDVILA`."""
    return f"Cosmos_Tokenize1_{model.replace('-', '_')}_HDVILA"


def tokenize1_hdvila(model: str) -> Config:
    """Post-training of a released Tokenize1 video model on HD-VILA clips, as NVIDIA's experiment."""
    config = video_basic()
    config.model = ModelSpec(
        ModelConfig(
            network_name=model,
            network=get_config(model, persistent_quantizer=False),
            ema=config.model.config.ema,
            loss=config.model.config.loss,
        )
    )
    res = model.rsplit("-", 1)[1].removesuffix("p")
    frames = 121 if model == "CV8x8x8-720p" else 49
    config.dataloader_train = _loader(f"hdvila_video{res}", frames, crop_height=256)
    config.dataloader_val = _loader(f"hdvila_video{res}", frames, crop_height=256)
    config.job = JobConfig(project="posttraining", group="tokenizer", name=f"Cosmos-Tokenize1-{model}-HDVILA")
    checkpoint = config.checkpoint
    checkpoint.load_path = f"checkpoints/Cosmos-Tokenize1-{model}/model.pt"
    checkpoint.strict_resume, checkpoint.load_training_state = True, True
    checkpoint.jit.input_shape = JIT_INPUT_SHAPE
    return config


def mock(config: Config) -> Config:
    """NVIDIA's debug job on synthetic 360p clips (same frames and crop), 2 iterations, no downloaded file."""
    for loader in (config.dataloader_train, config.dataloader_val):
        loader.dataset.name = "mock_video360"
        loader.num_workers = 2
    config.job.group, config.job.name = "debug", f"mock_{config.job.name}_{NOW}"
    trainer = config.trainer
    trainer.max_iter, trainer.logging_iter, trainer.max_val_iter, trainer.validation_iter = 2, 1, 1, 2
    checkpoint = config.checkpoint
    checkpoint.strict_resume, checkpoint.load_training_state, checkpoint.save_iter = False, False, 2
    checkpoint.load_path = None
    checkpoint.jit.input_shape = None  # the smallest valid example: tracing at 17x512x512 takes minutes on a CPU
    config.model.config.loss.on_missing_vgg_weights = "warn"
    return config


def _registry() -> dict[str, Callable[[], Config]]:
    experiments: dict[str, Callable[[], Config]] = {"video_basic": video_basic}
    for model in TOKENIZE1_MODELS:
        experiments[experiment_name(model)] = lambda m=model: tokenize1_hdvila(m)
    for model in TOKENIZE1_MODELS:
        experiments["mock_" + experiment_name(model)] = lambda m=model: mock(tokenize1_hdvila(m))
    return experiments


EXPERIMENTS: dict[str, Callable[[], Config]] = _registry()


def get_experiment(name: str) -> Config:
    """A fresh config of the named experiment (`-` and `_` and case are interchangeable); ValueError otherwise."""
    wanted = name.strip().replace("-", "_").lower()
    for known, build in EXPERIMENTS.items():
        if known.lower() == wanted:
            return build()
    close = difflib.get_close_matches(name.strip().replace("-", "_"), list(EXPERIMENTS), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown experiment {name!r}.{hint} Known: {', '.join(EXPERIMENTS)}")
