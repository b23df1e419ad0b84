"""The trainer's typed run config: schema, `key=value` overrides, named experiments, the command line, files."""

from .arguments import TrainFlags, format_config, parse_train_args, resolve_now, usage
from .experiments import EXPERIMENTS, experiment_name, get_experiment
from .files import load_config, save_config
from .overrides import apply_overrides, apply_values, flatten, to_dict
from .schema import Config

__all__ = [
    "TrainFlags",
    "format_config",
    "parse_train_args",
    "resolve_now",
    "usage",
    "EXPERIMENTS",
    "experiment_name",
    "get_experiment",
    "load_config",
    "save_config",
    "apply_overrides",
    "apply_values",
    "flatten",
    "to_dict",
    "Config",
]
