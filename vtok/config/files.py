"""The run config on disk: `config.json` (reloadable with `load_config`) and `config.yaml` (to read), beside the
checkpoints of every run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..io.atomic import atomic_path
from .overrides import apply_values, flatten, format_value, to_dict
from .schema import Config


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
