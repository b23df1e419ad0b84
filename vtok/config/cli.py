"""The trainer's command line: `[--] [--dryrun] experiment=NAME key=value ...`, and the saved run config.

NVIDIA's command puts `--` before the overrides and takes `--config=<file>`; both are accepted (the second is
ignored with a note, since vtok's experiments are registered in code). `experiment=NAME` may come anywhere:
it is applied first, then the other overrides in order, then the whole config is validated, so a bad
setting fails in one line before any model, data or process group is built.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..io.atomic import atomic_path
from .experiments import EXPERIMENTS, get_experiment
from .overrides import apply_overrides, apply_values, flatten, format_value, to_dict
from .schema import Config

USAGE = """usage: torchrun [torchrun options] -m vtok.train [--] [--dryrun] [experiment=NAME] [key=value ...]

  experiment=NAME   start from a named experiment (applied first wherever it appears)
  key=value         override one setting, e.g. trainer.max_iter=1000 optimizer.lr=5e-5 loss.perceptual.enabled=false
  --dryrun          print the resolved config and exit
  --help            this text

experiments: {experiments}"""

NOW_PATTERN = re.compile(r"\$\{now(?::([^}]*))?\}")
NOTE_CONFIG_FLAG = "ignoring --config: vtok's experiments are registered in code (experiment=NAME selects one)"


@dataclass(frozen=True)
class TrainFlags:
    """What the command line asked for besides the config."""

    dryrun: bool = False
    experiment: str | None = None
    overrides: tuple[str, ...] = ()  # the key=value overrides after the experiment, in order
    notes: tuple[str, ...] = ()  # one-line remarks for the log (e.g. an ignored NVIDIA flag)


def usage() -> str:
    return USAGE.format(experiments=", ".join(EXPERIMENTS))


def parse_train_args(argv: list[str]) -> tuple[Config, TrainFlags]:
    """The validated config and flags of a trainer command line; ValueError with one clear line otherwise.

    `--help`/`-h` prints the usage and raises SystemExit(0), as argparse does."""
    args = list(argv)
    if args[:1] == ["--"]:
        args = args[1:]
    dryrun, experiment, overrides, notes = False, None, [], []
    skip_next = False
    for i, arg in enumerate(args):
        if skip_next:
            skip_next = False
        elif arg in ("-h", "--help"):
            print(usage())
            raise SystemExit(0)
        elif arg == "--dryrun":
            dryrun = True
        elif arg == "--config" or arg.startswith("--config="):
            skip_next = arg == "--config" and i + 1 < len(args) and "=" not in args[i + 1]
            notes.append(NOTE_CONFIG_FLAG)
        elif arg == "--":
            continue
        elif arg.startswith("-"):
            raise ValueError(
                f"unknown option {arg!r}: the trainer takes --dryrun, experiment=NAME and key=value "
                "overrides (see --help)"
            )
        elif arg.partition("=")[0].strip() == "experiment":
            if experiment is not None:
                raise ValueError(f"experiment given twice: {experiment!r} and {arg.partition('=')[2]!r}")
            experiment = arg.partition("=")[2].strip()
            if not experiment:
                raise ValueError(f"experiment= needs a name, one of: {', '.join(EXPERIMENTS)}")
        else:
            overrides.append(arg)
    config = get_experiment(experiment) if experiment else Config()
    config = apply_overrides(config, overrides)
    config.validate()
    return config, TrainFlags(dryrun, experiment, tuple(overrides), tuple(notes))


def resolve_now(config: Config, when: datetime) -> Config:
    """The config with NVIDIA's `${now:FMT}` in job.project/group/name replaced by `when` (strftime FMT).

    Call it once per run with one time for every rank (e.g. rank 0's, broadcast), so all ranks agree."""
    values = {}
    for key in ("project", "group", "name"):
        text = getattr(config.job, key)
        values[f"job.{key}"] = NOW_PATTERN.sub(lambda m: when.strftime(m.group(1) or "%Y-%m-%d_%H-%M-%S"), text)
    resolved = apply_values(config, values)
    resolved.job.validate()
    return resolved


def format_config(config: Config) -> str:
    """Every setting as a `key=value` line in override syntax (what `--dryrun` prints; each line parses back)."""
    return "\n".join(f"{key}={format_value(value)}" for key, value in flatten(config).items())


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float):
        return _yaml_float(value)
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_scalar(v) for v in value) + "]"
    return format_value(value)


def _yaml_float(value: float) -> str:
    """A float YAML 1.1 readers also take as one: `1e-08` needs a dot there (`1.0e-08`)."""
    if value != value or value in (float("inf"), float("-inf")):
        return {"nan": ".nan", "inf": ".inf", "-inf": "-.inf"}[repr(value)]
    text = repr(value)
    mantissa, e, exponent = text.partition("e")
    return f"{mantissa if '.' in mantissa else mantissa + '.0'}{e}{exponent}"


def to_yaml(tree: dict[str, Any], indent: int = 0) -> str:
    """A nested dict of scalars and lists as block YAML (strings JSON-quoted, which YAML reads as is)."""
    lines = []
    for key, value in tree.items():
        pad = "  " * indent
        if isinstance(value, dict):
            lines.append(f"{pad}{key}:")
            lines.append(to_yaml(value, indent + 1))
        else:
            lines.append(f"{pad}{key}: {_yaml_scalar(value)}")
    return "\n".join(line for line in lines if line)


def save_config(config: Config, folder: str | Path) -> Path:
    """Write the resolved config as `config.json` (reloadable with `load_config`) and `config.yaml` (to read)."""
    folder = Path(folder)
    tree = to_dict(config)
    with atomic_path(folder / "config.json") as tmp:
        tmp.write_text(json.dumps(tree, indent=2) + "\n")
    with atomic_path(folder / "config.yaml") as tmp:
        tmp.write_text(to_yaml(tree) + "\n")
    return folder / "config.json"


def load_config(path: str | Path) -> Config:
    """A config saved by `save_config` (keys missing from the file keep their defaults), validated."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    config = apply_values(Config(), flatten(json.loads(path.read_text())))
    config.validate()
    return config
