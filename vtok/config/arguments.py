"""The trainer's command line: `[--] [--dryrun] [--plan] experiment=NAME key=value ...`, parsed into a validated Config.

NVIDIA's command puts `--` before the overrides and takes `--config=<file>`; both are accepted (the second is
ignored with a note, since vtok's experiments are registered in code). `experiment=NAME` may come anywhere:
it is applied first, then the other overrides in order, then the whole config is validated, so a bad
setting fails in one line before any model, data or process group is built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from .experiments import EXPERIMENTS, get_experiment
from .overrides import apply_overrides, apply_values, flatten, format_value
from .schema import Config

USAGE = """usage: torchrun [torchrun options] -m vtok.train [--] [--dryrun] [--plan] [experiment=NAME] [key=value ...]

  experiment=NAME   start from a named experiment (applied first wherever it appears)
  key=value         override one setting, e.g. trainer.max_iter=1000 optimizer.lr=5e-5 loss.perceptual.enabled=false
  --dryrun          print the resolved config and exit
  --plan            print the predicted peak memory per GPU (per rank under torchrun) and exit; allocates nothing
  --help            this text

experiments: {experiments}"""

NOW_PATTERN = re.compile(r"\$\{now(?::([^}]*))?\}")
NOTE_CONFIG_FLAG = "ignoring --config: vtok's experiments are registered in code (experiment=NAME selects one)"


@dataclass(frozen=True)
class TrainFlags:
    """What the command line asked for besides the config."""

    dryrun: bool = False
    plan: bool = False  # print the predicted peak memory per GPU and exit
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
    dryrun, plan, experiment, overrides, notes = False, False, None, [], []
    skip_next = False
    for i, arg in enumerate(args):
        if skip_next:
            skip_next = False
        elif arg in ("-h", "--help"):
            print(usage())
            raise SystemExit(0)
        elif arg == "--dryrun":
            dryrun = True
        elif arg == "--plan":
            plan = True
        elif arg == "--config" or arg.startswith("--config="):
            skip_next = arg == "--config" and i + 1 < len(args) and "=" not in args[i + 1]
            notes.append(NOTE_CONFIG_FLAG)
        elif arg == "--":
            continue
        elif arg.startswith("-"):
            raise ValueError(
                f"unknown option {arg!r}: the trainer takes --dryrun, --plan, experiment=NAME and key=value "
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
    return config, TrainFlags(dryrun, plan, experiment, tuple(overrides), tuple(notes))


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
