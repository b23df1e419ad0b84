"""The config reference, generated from the config dataclasses: `python -m vtok.config.reference > docs/config.md`.

Every key of the training config is listed with its override spelling, type, default and meaning. Meanings
come from the source itself: the `#` comment on (or just above) a field, else `field(metadata={"help": ...})`,
else `FIELD_HELP` below, which covers fields whose meaning is NVIDIA's and is not commented in the code
(the network's architecture fields, mostly). Groups are introduced by their class docstring. The named
experiments are listed with the keys each changes. `tests/test_config_reference.py` checks that
`docs/config.md` equals this output and that no key lacks a meaning.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import io
import re
import sys
import textwrap
import tokenize
from typing import Any

from .experiments import EXPERIMENTS, get_experiment
from .overrides import ALIASES, field_types, flatten, format_value, type_name
from .schema import Config

COMMAND = "python -m vtok.config.reference > docs/config.md"

# Meanings of fields that carry no comment in the code: {class name: {field: meaning}}.
FIELD_HELP: dict[str, dict[str, str]] = {
    "JobConfig": {
        "project": "first folder level of the job folder",
        "group": "second folder level of the job folder",
    },
    "TrainerConfig": {
        "max_iter": "iteration at which training stops (counted from the loaded iteration when the training "
        "state is loaded)",
        "validation_iter": "validate every this many iterations",
        "run_validation": "validate on the held-out videos during training",
        "logging_iter": "log losses, learning rate and speed every this many iterations",
        "grad_accum_iter": "micro-batches whose gradients are summed before each optimizer step",
        "activation_checkpointing": "recompute the network's activations in backward: less memory, more time",
        "tensorboard": "write TensorBoard event files in the job folder",
        "wandb": "also log to Weights & Biases (needs the `wandb` package and a login)",
    },
    "JitConfig": {"enabled": "write the three .jit files at every save"},
    "CheckpointConfig": {"save_iter": "save `iter_N.pt` every this many iterations (and at the end)"},
    "OptimizerConfig": {
        "lr": "learning rate after warmup",
        "betas": "AdamW's (beta1, beta2)",
        "eps": "AdamW's epsilon",
        "weight_decay": "AdamW's decoupled weight decay",
    },
    "SchedulerConfig": {
        "name": "learning-rate schedule",
        "warmup": "iterations of linear warmup",
    },
    "EMAConfig": {
        "enabled": "keep an EMA of the weights (saved as `ema.network-*`, exported to the .jit files)",
        "beta": "EMA decay per update",
    },
    "ColorConfig": {
        "boundaries": "iterations where the weight changes (piecewise-constant schedule)",
        "values": "the weight before the first boundary, then after each one (one more than the boundaries, or "
        "as many: then the first value holds from iteration 0)",
    },
    "PerceptualConfig": {
        "lpips_boundaries": "iterations where the VGG feature term's weight changes",
        "lpips_values": "weights of the VGG feature term, per schedule interval",
        "layer_weights": "weights of the relu1_2 .. relu5_3 feature differences (NVIDIA's)",
        "gram_enabled": "add the Gram-matrix (style) term on the same VGG features",
        "gram_boundaries": "iterations where the Gram term's weight changes",
        "gram_values": "weights of the Gram term, per schedule interval",
        "corr_boundaries": "NVIDIA's correlation term's schedule (unused)",
        "corr_values": "NVIDIA's correlation term's weights (unused)",
    },
    "KLConfig": {
        "boundaries": "iterations where the KL weight changes",
        "values": "weights of the KL term, per schedule interval",
    },
    "FlowConfig": {
        "enabled": "add the optical-flow term",
        "boundaries": "iterations where the flow term's weight changes",
        "values": "weights of the flow term, per schedule interval",
        "scale": "downscale factor of the frames fed to the flow network",
        "dtype": "dtype of the flow network",
        "checkpoint_activations": "recompute the flow network in backward: less memory, more time",
    },
    "VideoConsistencyConfig": {
        "enabled": "add the video-consistency term",
        "boundaries": "iterations where the consistency term's weight changes",
        "values": "weights of the consistency term, per schedule interval",
        "num_frames": "frames per overlapping window",
        "step": "frames between window starts",
    },
    "LPIPSConfig": {
        "enabled": "add the standard LPIPS-VGG term (logged as `lpips_vgg`; NVIDIA's `lpips` is the VGG feature term)",
        "boundaries": "iterations where the LPIPS term's weight changes",
        "values": "weights of the LPIPS term, per schedule interval",
    },
    "AdversarialConfig": {"enabled": "run the adversarial stage (a discriminator and a generator term)"},
    "LossTerms": {"reduce": "NVIDIA's reduction of the loss terms; only MEAN is supported"},
    "AugmentConfig": {"flip_enabled": "allow the left-right flip at all"},
    "LoaderConfig": {
        "batch_size": "clips per rank per micro-batch",
        "num_workers": "DataLoader worker processes per rank",
        "prefetch_factor": "batches each worker loads ahead",
    },
    "TokenizerConfig": {
        "name": "family: CV, DV (video), CI, DI (image); C continuous, D discrete (FSQ)",
        "in_channels": "input channels (RGB)",
        "out_channels": "output channels (RGB)",
        "channels": "base width of encoder and decoder (released models: 128; smaller for quick tests)",
        "channels_mult": "width multiplier of each resolution level",
        "num_res_blocks": "residual blocks per level",
        "attn_resolutions": "nominal resolutions with attention inside the levels (none in the released models; "
        "their mid blocks always have attention)",
        "resolution": "nominal input resolution that `attn_resolutions` counts from",
        "dropout": "dropout in the residual blocks",
        "patch_size": "downsampling of the Haar wavelet patcher, in space and (video) time",
        "patch_method": "patcher: only 'haar'",
        "spatial_compression": "pixels per latent in height and width",
        "temporal_compression": "frames per latent frame after the first (video models)",
        "z_channels": "channels at the encoder's output, before `quant_conv`",
        "z_factor": "1 for AE and FSQ; 2 for VAE (mean and log-variance)",
        "latent_channels": "channels of a continuous latent",
        "formulation": "continuous models: 'AE' or 'VAE'",
        "quantizer": "discrete models: only 'FSQ'",
        "embedding_dim": "FSQ code dimension (the number of levels)",
        "levels": "FSQ levels per code dimension (their product is the codebook size, 64,000)",
        "num_quantizers": "NVIDIA's field for residual quantizers; unused by FSQ",
        "persistent_quantizer": "save the FSQ buffers in the state dict (NVIDIA's training configs: false)",
        "num_groups": "NVIDIA's GroupNorm setting; video blocks use 1 group per frame, image blocks 32 groups",
        "legacy_mode": "NVIDIA's legacy temporal-upsampling order (false in every released model)",
        "encoder": "'FACTORIZED' for video models, 'Default' for image models",
        "decoder": "'FACTORIZED' for video models, 'Default' for image models",
    },
}


@functools.cache
def source_comments(cls: type) -> dict[str, str]:
    """{field: text} of the `#` comments on a field's lines, or on the comment lines right above it."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments = {
        tok.start[0]: tok.string.lstrip("#").strip()
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    }
    lines = source.splitlines()
    found: dict[str, str] = {}
    for node in ast.parse(source).body[0].body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        texts = [comments[n] for n in range(node.lineno, node.end_lineno + 1) if n in comments]
        above, n = [], node.lineno - 1
        while n >= 1 and lines[n - 1].strip().startswith("#"):
            above.insert(0, comments[n])
            n -= 1
        if above or texts:
            found[node.target.id] = " ".join(above + texts)
    return found


def field_help(cls: type, name: str) -> str:
    """The meaning of one field: its source comment, else its `help` metadata, else FIELD_HELP."""
    comment = source_comments(cls).get(name)
    if comment:
        return _clean(re.sub(r"\bNone\b", "null", comment))
    meta = {f.name: f.metadata.get("help") for f in dataclasses.fields(cls)}.get(name)
    return meta or FIELD_HELP.get(cls.__name__, {}).get(name, "")


def _short(value: Any) -> str:
    """A default as override text, floats to 6 significant digits."""
    if isinstance(value, float):
        text = f"{value:.6g}"
        return text if any(c in text for c in ".en") else text + ".0"
    if isinstance(value, (list, tuple)) and any(isinstance(v, float) for v in value):
        return "[" + ",".join(_short(v) for v in value) + "]"
    return format_value(value)


def _alias(key: str) -> str | None:
    """The short spelling of a key (`loss.<term>.<field>`), if it has one."""
    for short, (prefix, inner) in ALIASES.items():
        if key.startswith(prefix + "."):
            rest = key[len(prefix) + 1 :].split(".")
            if len(rest) == 3 and rest[1] == inner:
                return f"{short}.{rest[0]}.{rest[2]}"
            if len(rest) == 1:
                return f"{short}.{rest[0]}"
    return None


@dataclasses.dataclass
class Row:
    key: str
    type: str
    default: str
    meaning: str


def groups(cls: type, value: Any, prefix: str = "") -> list[tuple[str, type, list[Row]]]:
    """(dotted group, class, rows of its leaf fields) for `cls` and every nested group, depth first."""
    rows: list[Row] = []
    nested: list[tuple[str, type, list[Row]]] = []
    for name, tp in field_types(cls).items():
        key, child = f"{prefix}{name}", getattr(value, name)
        if dataclasses.is_dataclass(tp):
            nested += groups(tp, child, key + ".")
        else:
            rows.append(Row(key, type_name(tp), _short(flatten_value(child)), field_help(cls, name)))
    return ([(prefix.rstrip("."), cls, rows)] if rows else []) + nested


def flatten_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _intro(cls: type) -> str:
    doc = inspect.getdoc(cls) or ""
    if doc.startswith(f"{cls.__name__}("):  # dataclass's generated signature, not a docstring
        return ""
    return _clean(" ".join(doc.split("\n\n")[0].split()))


def _clean(text: str) -> str:
    """Text without pointers into docs/design.md (the reference page links it once, at the top)."""
    return re.sub(r"\s*\(docs/design\.md#[^)]*\)", "", text)


def _parent(name: str) -> str | None:
    """The experiment a named one is built from (its changes are listed relative to it)."""
    if name.startswith("mock_"):
        return name[5:]
    return "video_basic" if name != "video_basic" else None


def _changes(name: str) -> list[str]:
    base = flatten(get_experiment(_parent(name)) if _parent(name) else Config())
    own = flatten(get_experiment(name))
    return [f"{k}={_short(v)}" for k, v in own.items() if base.get(k) != v]


def render() -> str:
    """The whole of docs/config.md."""
    config = Config()
    out = [
        "# Training config reference",
        "",
        f"Generated from the config dataclasses by `{COMMAND}`; do not edit",
        "by hand (a test compares it with the generator's output).",
        "",
        "Every key is set with `key=value` on the trainer's command line (`python -m vtok.train`, `torchrun -m",
        "vtok.train`, `vtok train`), after `experiment=NAME` has chosen the starting values. Values: numbers,",
        "`true`/`false`, strings (quotes optional), `null` for optional keys, lists as `[1,3,17,512,512]`. The",
        "loss keys also have a short form, `loss.<term>.<field>` for",
        "`model.config.loss.config.<term>.config.<field>`. `--dryrun` prints every key with its value; a run",
        "saves them in `config.json` / `config.yaml`. Defaults below are those of the base config, before an",
        "experiment changes them (see [Experiments](#experiments)).",
        "",
    ]
    seen: dict[str, list[Row]] = {}
    for group, cls, rows in groups(type(config), config):
        twin = next(
            (
                g
                for g, r in seen.items()
                if group.split(".", 1)[1:] == g.split(".", 1)[1:]
                and group.split(".")[0].startswith("dataloader")
                and g.split(".")[0].startswith("dataloader")
                and [(x.type, x.default) for x in r] == [(x.type, x.default) for x in rows]
            ),
            None,
        )
        seen[group] = rows
        out += [f"## `{group}`", ""]
        if twin is not None:
            out += [f"The same keys, types and defaults as [`{twin}`](#{twin.replace('.', '')}).", ""]
            continue
        if intro := _intro(cls):
            out += [intro, ""]
        out += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for row in rows:
            alias = _alias(row.key)
            key = f"`{row.key}`" + (f" (`{alias}`)" if alias else "")
            out.append(f"| {key} | {_cell(row.type)} | `{_cell(row.default)}` | {_cell(row.meaning)} |")
        out.append("")
    out += [
        "## Experiments",
        "",
        "`experiment=NAME` starts from one of these; each line is a key it sets differently from the",
        "experiment it is built from (`video_basic` from the base config, the HDVILA runs from",
        "`video_basic`, each `mock_` run from its HDVILA run).",
        "",
    ]
    for name in EXPERIMENTS:
        parent = _parent(name)
        out += [f"### `{name}`", "", f"From {f'`{parent}`' if parent else 'the base config'}:", "", "```text"]
        out += _changes(name) or ["(no changes)"]
        out += ["```", ""]
    return "\n".join(out).rstrip() + "\n"


def missing_help() -> list[str]:
    """Keys whose meaning is empty (the test requires none)."""
    config = Config()
    return [row.key for _, _, rows in groups(type(config), config) for row in rows if not row.meaning]


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
