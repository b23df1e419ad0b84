"""The trainer's typed run config: schema, `key=value` overrides, named experiments and the command line."""

from .cli import TrainFlags, format_config, load_config, parse_train_args, resolve_now, save_config
from .experiments import EXPERIMENTS, get_experiment
from .overrides import apply_overrides, apply_values, flatten, to_dict
from .schema import Config

__all__ = [
    "TrainFlags",
    "format_config",
    "load_config",
    "parse_train_args",
    "resolve_now",
    "save_config",
    "EXPERIMENTS",
    "get_experiment",
    "apply_overrides",
    "apply_values",
    "flatten",
    "to_dict",
    "Config",
]
