"""The trainer's run config: experiments with the reference's settings, typed overrides, the command line."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime

import pytest

from vtok.config import (
    EXPERIMENTS,
    Config,
    apply_overrides,
    flatten,
    format_config,
    get_experiment,
    load_config,
    parse_train_args,
    resolve_now,
    save_config,
)
from vtok.config.overrides import apply_values
from vtok.losses import LossConfig
from vtok.networks import TokenizerConfig, get_config

MODELS = {  # model: (experiment, data, frames)
    "CV8x8x8-720p": ("Cosmos_Tokenize1_CV8x8x8_720p_HDVILA", "hdvila_video720", 121),
    "DV8x16x16-720p": ("Cosmos_Tokenize1_DV8x16x16_720p_HDVILA", "hdvila_video720", 49),
    "CV4x8x8-360p": ("Cosmos_Tokenize1_CV4x8x8_360p_HDVILA", "hdvila_video360", 49),
    "DV4x8x8-360p": ("Cosmos_Tokenize1_DV4x8x8_360p_HDVILA", "hdvila_video360", 49),
}
CV = "Cosmos_Tokenize1_CV8x8x8_720p_HDVILA"


def test_every_experiment_resolves_and_validates():
    assert set(EXPERIMENTS) == {
        "video_basic",
        *(e for e, _, _ in MODELS.values()),
        *(f"mock_{e}" for e, _, _ in MODELS.values()),
    }
    for name in EXPERIMENTS:
        config = get_experiment(name)
        config.validate()
        assert get_experiment(name) is not config  # fresh each time: editing one cannot leak into the next


@pytest.mark.parametrize("model", MODELS)
def test_tokenize1_experiments_have_the_reference_settings(model):
    experiment, data, frames = MODELS[model]
    config = get_experiment(experiment)
    network = config.model.config.network
    assert config.model.config.network_name == model
    assert network == get_config(model, persistent_quantizer=False) and not network.persistent_quantizer
    if model.startswith("DV"):
        assert network.name == "DV" and network.z_channels == (16 if model == "DV8x16x16-720p" else 256)
    for loader in (config.dataloader_train, config.dataloader_val):
        assert loader.batch_size == 1
        assert (loader.dataset.name, loader.dataset.num_video_frames, loader.dataset.crop_height) == (data, frames, 256)
    assert (config.job.project, config.job.group, config.job.name) == (
        "posttraining",
        "tokenizer",
        f"Cosmos-Tokenize1-{model}-HDVILA",
    )
    ckpt = config.checkpoint
    assert ckpt.load_path == f"checkpoints/Cosmos-Tokenize1-{model}/model.pt"
    assert ckpt.strict_resume and ckpt.load_training_state and ckpt.load_optimizer_hparams
    assert ckpt.jit.input_shape == (1, 3, 17, 512, 512) and ckpt.jit.enabled and ckpt.jit.dtype == "bfloat16"
    perceptual = config.model.config.loss.config.perceptual.config
    assert perceptual.lpips_boundaries == [0] and perceptual.lpips_values == [0.1] and not perceptual.gram_enabled
    assert config.model.config.loss.on_missing_vgg_weights == "error"


def test_video_basic_and_base_defaults_follow_the_reference():
    config = get_experiment("video_basic")
    assert config.dataloader_train.dataset.name == "mock_video720"
    assert (config.dataloader_train.dataset.crop_height, config.dataloader_val.dataset.crop_height) == (256, 720)
    assert config.dataloader_val.dataset.num_video_frames == 49 and config.checkpoint.load_path is None
    losses = config.model.config.loss.to_loss_config()
    assert isinstance(losses, LossConfig) and losses.reduce == "MEAN"
    assert (losses.color.norm, losses.color.values, losses.kl.values) == ("L1", [1.0], [1e-6])
    assert not losses.flow.enabled and losses.flow.boundaries == [1_000_000]
    assert not losses.video_consistency.enabled and (
        losses.video_consistency.num_frames,
        losses.video_consistency.step,
    ) == (32, 8)
    losses.perceptual.enabled = False  # a copy: the run config keeps its own
    assert config.model.config.loss.config.perceptual.config.enabled
    base = Config()
    trainer = base.trainer
    assert (trainer.max_iter, trainer.validation_iter, trainer.max_val_iter, trainer.logging_iter, trainer.seed) == (
        10_000_000,
        5000,
        1,
        100,
        1234,
    )
    assert (trainer.clip_grad_norm, trainer.precision, trainer.parallelism, trainer.grad_accum_iter) == (
        1.0,
        "auto",
        "ddp",
        1,
    )
    opt = base.optimizer
    assert (opt.lr, opt.betas, opt.eps, opt.weight_decay) == (1e-4, (0.5, 0.999), 1e-8, 0.01)
    assert (base.scheduler.name, base.scheduler.warmup) == ("warmup", 5000)
    ema = base.model.config.ema
    assert ema.enabled and ema.beta == 0.9999 and not ema.warmup
    assert base.checkpoint.save_iter == 5000 and base.job.project == "posttraining"


@pytest.mark.parametrize("model", MODELS)
def test_mock_variants_are_smoke_runs_without_downloads(model):
    experiment, _, frames = MODELS[model]
    config = get_experiment(f"mock_{experiment}")
    for loader in (config.dataloader_train, config.dataloader_val):
        assert loader.dataset.name == "mock_video360"
        assert (loader.dataset.num_video_frames, loader.dataset.crop_height) == (frames, 256)
    trainer = config.trainer
    assert (trainer.max_iter, trainer.logging_iter, trainer.max_val_iter, trainer.validation_iter) == (2, 1, 1, 2)
    ckpt = config.checkpoint
    assert (ckpt.save_iter, ckpt.strict_resume, ckpt.load_training_state, ckpt.load_path) == (2, False, False, None)
    assert config.job.group == "debug"
    assert config.job.name.startswith(f"mock_Cosmos-Tokenize1-{model}-HDVILA_${{now:")
    assert config.model.config.loss.on_missing_vgg_weights == "warn"
    assert config.model.config.network == get_experiment(experiment).model.config.network


def test_unknown_experiment_suggests_close_names():
    with pytest.raises(ValueError, match="Did you mean Cosmos_Tokenize1_CV8x8x8_720p_HDVILA"):
        get_experiment("Cosmos_Tokenize1_CV8x8x8_720_HDVILA")
    assert get_experiment("cosmos-tokenize1-cv8x8x8-720p-hdvila").job.name == "Cosmos-Tokenize1-CV8x8x8-720p-HDVILA"


NVIDIA_KEYS = [  # override, path from the config, expected value
    ("job.project=proj", "job.project", "proj"),
    ("job.group=grp", "job.group", "grp"),
    ("job.name=my_run", "job.name", "my_run"),
    ("trainer.max_iter=1000", "trainer.max_iter", 1000),
    ("trainer.validation_iter=250", "trainer.validation_iter", 250),
    ("trainer.max_val_iter=4", "trainer.max_val_iter", 4),
    ("trainer.logging_iter=10", "trainer.logging_iter", 10),
    ("trainer.seed=7", "trainer.seed", 7),
    ("trainer.grad_accum_iter=4", "trainer.grad_accum_iter", 4),
    ("trainer.clip_grad_norm=0.5", "trainer.clip_grad_norm", 0.5),
    ("trainer.clip_grad_norm=2", "trainer.clip_grad_norm", 2.0),
    ("trainer.clip_grad_norm=null", "trainer.clip_grad_norm", None),
    ("trainer.precision=bf16_pure", "trainer.precision", "bf16_pure"),
    ("trainer.parallelism=fsdp", "trainer.parallelism", "fsdp"),
    ("trainer.activation_checkpointing=true", "trainer.activation_checkpointing", True),
    ("trainer.compile=True", "trainer.compile", True),
    ("trainer.collective_timeout_s=600", "trainer.collective_timeout_s", 600),
    ("checkpoint.save_iter=500", "checkpoint.save_iter", 500),
    ("checkpoint.load_path=ckpt/model.pt", "checkpoint.load_path", "ckpt/model.pt"),
    ("checkpoint.load_path=null", "checkpoint.load_path", None),
    ("checkpoint.load_path=None", "checkpoint.load_path", None),
    ("checkpoint.strict_resume=false", "checkpoint.strict_resume", False),
    ("checkpoint.load_training_state=False", "checkpoint.load_training_state", False),
    ("checkpoint.jit.input_shape=[1,3,9,256,256]", "checkpoint.jit.input_shape", (1, 3, 9, 256, 256)),
    ("checkpoint.jit.input_shape=[1, 3, 25, 512, 512]", "checkpoint.jit.input_shape", (1, 3, 25, 512, 512)),
    ("checkpoint.jit.enabled=false", "checkpoint.jit.enabled", False),
    ("checkpoint.jit.dtype=float32", "checkpoint.jit.dtype", "float32"),
    ("optimizer.lr=5e-5", "optimizer.lr", 5e-5),
    ("optimizer.betas=[0.9,0.99]", "optimizer.betas", (0.9, 0.99)),
    ("optimizer.betas=(0.9, 0.95)", "optimizer.betas", (0.9, 0.95)),
    ("optimizer.eps=1e-6", "optimizer.eps", 1e-6),
    ("optimizer.weight_decay=0", "optimizer.weight_decay", 0.0),
    ("optimizer.fused=false", "optimizer.fused", False),
    ("scheduler.warmup=100", "scheduler.warmup", 100),
    ("model.config.ema.enabled=false", "model.config.ema.enabled", False),
    ("model.config.ema.beta=0.999", "model.config.ema.beta", 0.999),
    ("model.config.ema.warmup=true", "model.config.ema.warmup", True),
    ("model.config.network.legacy_mode=True", "model.config.network.legacy_mode", True),
    ("model.config.network.channels=32", "model.config.network.channels", 32),
    (
        "model.config.loss.config.perceptual.config.enabled=false",
        "model.config.loss.config.perceptual.config.enabled",
        False,
    ),
    (
        "model.config.loss.config.perceptual.config.lpips_values=[0.0,0.1]",
        "model.config.loss.config.perceptual.config.lpips_values",
        [0.0, 0.1],
    ),
    (
        "model.config.loss.config.perceptual.config.vgg_weights=/w/vgg16.pth",
        "model.config.loss.config.perceptual.config.vgg_weights",
        "/w/vgg16.pth",
    ),
    ("model.config.loss.config.flow.config.enabled=true", "model.config.loss.config.flow.config.enabled", True),
    ("model.config.loss.config.kl.config.values=[1e-5]", "model.config.loss.config.kl.config.values", [1e-5]),
    ("model.config.loss.on_missing_vgg_weights=warn", "model.config.loss.on_missing_vgg_weights", "warn"),
    ("dataloader_train.batch_size=2", "dataloader_train.batch_size", 2),
    ("dataloader_train.dataset.num_video_frames=17", "dataloader_train.dataset.num_video_frames", 17),
    ("dataloader_train.dataset.crop_height=512", "dataloader_train.dataset.crop_height", 512),
    ("dataloader_val.batch_size=3", "dataloader_val.batch_size", 3),
    ("dataloader_val.dataset.num_video_frames=9", "dataloader_val.dataset.num_video_frames", 9),
    ("dataloader_val.dataset.crop_height=null", "dataloader_val.dataset.crop_height", None),
    ("dataloader_train.dataset.video_pattern=my/*.mp4", "dataloader_train.dataset.video_pattern", "my/*.mp4"),
    (
        "dataloader_train.dataset.video_pattern=[a/*.mp4,b/*.mp4]",
        "dataloader_train.dataset.video_pattern",
        ["a/*.mp4", "b/*.mp4"],
    ),
    ('dataloader_train.dataset.video_pattern=["a b/*.mp4"]', "dataloader_train.dataset.video_pattern", ["a b/*.mp4"]),
]


def _get(config, path):
    for part in path.split("."):
        config = getattr(config, part)
    return config


@pytest.mark.parametrize("override, path, expected", NVIDIA_KEYS, ids=[o for o, _, _ in NVIDIA_KEYS])
def test_override_sets_the_field_with_its_type(override, path, expected):
    config = get_experiment(CV)
    before = flatten(config)
    changed = apply_overrides(config, [override])
    value = _get(changed, path)
    assert value == expected and type(value) is type(expected)
    assert flatten(config) == before  # the argument is left as it was
    after = flatten(changed)
    assert [k for k in after if after[k] != before[k]] in ([], [path] if "." in path else [])


def test_overrides_apply_in_order_and_the_last_wins():
    config = apply_overrides(Config(), ["trainer.max_iter=5", "trainer.max_iter=6"])
    assert config.trainer.max_iter == 6


def test_loss_alias_reaches_the_nvidia_key():
    config = apply_overrides(
        get_experiment(CV), ["loss.perceptual.enabled=false", "loss.flow.scale=4", "loss.perceptual.gram_enabled=true"]
    )
    perceptual = config.model.config.loss.config.perceptual.config
    assert not perceptual.enabled and perceptual.gram_enabled
    assert config.model.config.loss.config.flow.config.scale == 4
    assert apply_overrides(config, ["loss.reduce=SUM"]).model.config.loss.config.reduce == "SUM"
    enabled, _ = parse_train_args([f"experiment={CV}", "loss.flow.enabled=true", "loss.flow.network=raft.jit"])
    assert enabled.model.config.loss.config.flow.config.network == "raft.jit"
    with pytest.raises(ValueError, match="loss.flow.scale must be at least 1, got 0"):
        parse_train_args([f"experiment={CV}", "loss.flow.scale=0"])
    with pytest.raises(ValueError, match="Did you mean .*perceptual.config.lpips_values"):
        apply_overrides(Config(), ["loss.perceptual.lpips_value=[1]"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.max_iters=3", "unknown config key 'trainer.max_iters'. Did you mean trainer.max_iter"),
        ("checkpoint.jit.input_shap=[1]", "Did you mean checkpoint.jit.input_shape"),
        ("model.config.network.channel=32", "Did you mean model.config.network.channels"),
        ("dataloader_train.dataset.num_frames=9", "Did you mean dataloader_train.dataset.num_video_frames"),
        ("zzz=1", "no 'zzz' at the top level. Valid: checkpoint, dataloader_train, dataloader_val, job, model"),
        ("trainer.max_iter.x=1", "Did you mean trainer.max_iter"),
        ("model.config.network=DV", "'model.config.network' is a group of settings"),
        ("trainer.max_iter", "expected key=value"),
    ],
)
def test_unknown_keys_name_the_closest_valid_ones(override, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        apply_overrides(Config(), [override])


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.max_iter=abc", "trainer.max_iter: expected int, got 'abc'"),
        ("trainer.max_iter=1.5", "trainer.max_iter: expected int, got '1.5'"),
        ("trainer.compile=yes", "trainer.compile: expected bool, got 'yes'"),
        ("trainer.max_iter=null", "trainer.max_iter: expected int, got 'null'"),
        ("optimizer.lr=fast", "optimizer.lr: expected float, got 'fast'"),
        ("trainer.clip_grad_norm=none!", "trainer.clip_grad_norm: expected float or null, got 'none!'"),
        (
            "trainer.precision=bf16",
            "trainer.precision: expected one of 'auto', 'bf16_autocast', 'bf16_pure', 'fp32', got 'bf16'",
        ),
        ("optimizer.betas=[0.9]", "optimizer.betas: expected list of 2 float, got '[0.9]'"),
        ("optimizer.betas=0.9", "optimizer.betas: expected list of 2 float, got '0.9'"),
        ("checkpoint.jit.input_shape=[1,3,a]", "checkpoint.jit.input_shape: expected list of int or null"),
        ("model.config.network.channels=wide", "model.config.network.channels: expected int, got 'wide'"),
    ],
)
def test_wrong_types_name_key_expected_type_and_value(override, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        apply_overrides(Config(), [override])


def test_network_overrides_replace_the_frozen_config_through_its_validation():
    config = get_experiment(CV)
    original = config.model.config.network
    changed = apply_overrides(
        config, ["model.config.network.patch_size=2", "model.config.network.temporal_compression=4"]
    )
    network = changed.model.config.network
    assert isinstance(network, TokenizerConfig) and network == get_config("CV4x8x8-360p")
    assert config.model.config.network is original and original == get_config("CV8x8x8-720p")
    with pytest.raises(dataclasses.FrozenInstanceError):
        network.channels = 1
    with pytest.raises(
        ValueError,
        match=r"model.config.network.channels_mult=\[4\]: invalid model.config.network: "
        "spatial_compression=8 needs 1 downsampling levels",
    ):
        apply_overrides(config, ["model.config.network.channels_mult=[4]"])
    with pytest.raises(ValueError, match="patch_size=3: must be a power of two"):
        apply_overrides(config, ["model.config.network.patch_size=3"])


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "dataloader_train.dataset.num_video_frames=50",
            r"dataloader_train.dataset.num_video_frames=50: must be 1 \+ a multiple of 8 .* e.g. 49 or 57",
        ),
        ("dataloader_val.dataset.num_video_frames=48", "dataloader_val.dataset.num_video_frames=48"),
        ("dataloader_train.dataset.crop_height=20", "dataloader_train.dataset.crop_height=20 gives 16x0"),
        (
            "dataloader_train.dataset.crop_width=100",
            "dataloader_train.dataset: an explicit crop must be a multiple of 8",
        ),
        ("dataloader_train.batch_size=0", "dataloader_train.batch_size must be at least 1"),
        ("dataloader_train.dataset.augment.flip_prob=2", "dataloader_train.dataset.augment.flip_prob must be between"),
        ("dataloader_train.dataset.name=youtube_video720", "dataloader_train.dataset.name: unknown dataset"),
        ("job.name=", "job.name must not be empty"),
        ("job.group=a/b", "job.group='a/b': must be one folder name"),
        (
            "checkpoint.jit.input_shape=[1,3,1,512,512]",
            "checkpoint.jit.input_shape=.*T must be 1 \\+ a positive multiple",
        ),
        ("optimizer.betas=[1.5,0.9]", "optimizer.betas must both be in"),
        ("trainer.grad_accum_iter=0", "trainer.grad_accum_iter must be at least 1"),
        (
            "loss.perceptual.lpips_values=[0.1,0.2,0.3]",
            "model.config.loss.config.perceptual.config: a weight schedule needs as many values as boundaries",
        ),
        ("loss.perceptual.layer_weights=[1,2]", "loss.perceptual.layer_weights needs 5 weights"),
        ("model.config.network_name=DV4x8x8-360p", "model.config.network_name='DV4x8x8-360p' is a DV model"),
    ],
)
def test_validation_names_the_key_before_any_work(override, message):
    with pytest.raises(ValueError, match=message):
        parse_train_args([f"experiment={CV}", override])


def test_command_line_forms():
    config, flags = parse_train_args(["--", f"experiment={CV}", "trainer.max_iter=10"])
    assert config.trainer.max_iter == 10 and config.job.name == "Cosmos-Tokenize1-CV8x8x8-720p-HDVILA"
    assert flags == type(flags)(dryrun=False, experiment=CV, overrides=("trainer.max_iter=10",))
    config, flags = parse_train_args(
        ["trainer.max_iter=10", "--dryrun", f"experiment=mock_{CV}", "dataloader_train.dataset.num_video_frames=9"]
    )
    assert flags.dryrun and config.trainer.max_iter == 10  # the experiment came first, the override wins
    assert config.dataloader_train.dataset.num_video_frames == 9
    config, flags = parse_train_args(
        ["--config=cosmos_predict1/tokenizer/training/configs/config.py", "--", f"experiment={CV}"]
    )
    assert flags.notes and "ignoring --config" in flags.notes[0]
    config, flags = parse_train_args([])
    assert flags.experiment is None and flatten(config) == flatten(Config())
    with pytest.raises(ValueError, match="experiment given twice"):
        parse_train_args([f"experiment={CV}", "experiment=video_basic"])
    with pytest.raises(ValueError, match="unknown option '--dry-run'"):
        parse_train_args(["--dry-run"])
    with pytest.raises(ValueError, match="experiment= needs a name"):
        parse_train_args(["experiment="])
    with pytest.raises(ValueError, match="unknown experiment 'nope'"):
        parse_train_args(["experiment=nope"])


def test_help_prints_usage_with_the_experiments(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_train_args(["--help"])
    assert exit_info.value.code == 0 and f"mock_{CV}" in capsys.readouterr().out


def test_resolve_now_fills_nvidia_timestamps():
    config = get_experiment(f"mock_{CV}")
    resolved = resolve_now(config, datetime(2025, 1, 2, 3, 4, 5))
    assert resolved.job.name == "mock_Cosmos-Tokenize1-CV8x8x8-720p-HDVILA_2025-01-02_03-04-05"
    assert "${now" in config.job.name
    assert resolved.job.folder().parts[-3:] == ("posttraining", "debug", resolved.job.name)


def test_dryrun_text_parses_back_to_the_same_config():
    config, _ = parse_train_args(
        [
            f"experiment=mock_{CV}",
            "optimizer.betas=[0.9,0.99]",
            "dataloader_train.dataset.video_pattern=[a/*.mp4,b/*.mp4]",
        ]
    )
    text = format_config(config)
    assert "trainer.max_iter=2" in text.splitlines() and "checkpoint.load_path=null" in text.splitlines()
    assert flatten(apply_overrides(Config(), text.splitlines())) == flatten(config)


def test_save_config_round_trip(tmp_path):
    config, _ = parse_train_args(
        [
            "experiment=Cosmos_Tokenize1_DV4x8x8_360p_HDVILA",
            "loss.perceptual.enabled=false",
            "model.config.network.channels=64",
            "checkpoint.load_path=null",
        ]
    )
    path = save_config(config, tmp_path / "job")
    assert path == tmp_path / "job" / "config.json" and sorted(p.name for p in path.parent.iterdir()) == [
        "config.json",
        "config.yaml",
    ]
    assert flatten(json.loads(path.read_text())) == flatten(config)
    loaded = load_config(path.parent)
    assert flatten(loaded) == flatten(config) and loaded.model.config.network == config.model.config.network
    yaml = pytest.importorskip("yaml")
    assert flatten(yaml.safe_load((tmp_path / "job" / "config.yaml").read_text())) == flatten(config)


def test_apply_values_type_checks_json_values():
    config = apply_values(Config(), {"trainer.max_iter": 3, "optimizer.lr": 1, "optimizer.betas": [0.9, 0.9]})
    assert config.optimizer.lr == 1.0 and type(config.optimizer.lr) is float and config.optimizer.betas == (0.9, 0.9)
    with pytest.raises(ValueError, match="trainer.max_iter: expected int, got '3'"):
        apply_values(Config(), {"trainer.max_iter": "3"})
    with pytest.raises(ValueError, match="trainer.compile: expected bool, got 1"):
        apply_values(Config(), {"trainer.compile": 1})
