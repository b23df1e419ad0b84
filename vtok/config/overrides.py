"""`key=value` overrides on typed configs: dotted keys, values parsed by the field's type hint, clear errors.

`apply_overrides(config, ["trainer.max_iter=1000", "optimizer.betas=[0.9,0.99]"])` returns a new config and
leaves its argument untouched. Values: ints, floats, `true`/`false`, strings (quotes optional), `null`/`None`
for optional fields, lists as `[1,3,17,512,512]` or JSON, and the choices of a Literal. Frozen dataclasses
(the network's TokenizerConfig) are rebuilt with all their overridden fields at once, through their own
validation. `flatten(config)` lists every dotted key with a JSON-ready value (sequences become lists).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import json
import types
import typing
from typing import Any, Literal, Union

NULLS = ("null", "None", "none", "~")
TRUE, FALSE = ("true", "True", "TRUE"), ("false", "False", "FALSE")
ALIASES = {"loss": ("model.config.loss.config", "config")}  # loss.<term>.<field> -> ....<term>.config.<field>


class _Mismatch(Exception):
    """A value that does not fit a type; turned into a ValueError naming the key by the caller."""


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """{field name: resolved type hint} of a dataclass (its annotations are strings under __future__)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def expand_alias(key: str) -> str:
    """`loss.<term>.<field>` -> `model.config.loss.config.<term>.config.<field>`, `loss.reduce` ->
    `model.config.loss.config.reduce`; other keys unchanged."""
    head, _, rest = key.partition(".")
    if head in ALIASES and rest and rest.count(".") <= 1:
        prefix, inner = ALIASES[head]
        term, _, name = rest.partition(".")
        return f"{prefix}.{term}.{inner}.{name}" if name else f"{prefix}.{term}"
    return key


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """{dotted key: value} of every leaf of a config dataclass (or of its nested-dict form), in field order."""
    items = (
        {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
        if dataclasses.is_dataclass(config)
        else config
    )
    flat: dict[str, Any] = {}
    for name, value in items.items():
        key = f"{prefix}{name}"
        if dataclasses.is_dataclass(value) or isinstance(value, dict):
            flat.update(flatten(value, key + "."))
        else:
            flat[key] = _plain(value)
    return flat


def to_dict(config: Any) -> dict[str, Any]:
    """The nested-dict form of a config, JSON-ready (what `save_config` writes)."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out[f.name] = to_dict(value) if dataclasses.is_dataclass(value) else _plain(value)
    return out


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def type_name(tp: Any) -> str:
    """A readable name of a type hint: `int`, `int or null`, `list of float`, `one of 'ddp', 'fsdp'`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        names = [type_name(a) for a in args if a is not type(None)]
        return " or ".join(names + (["null"] if type(None) in args else []))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (tuple, list):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"list of {len(args)} {type_name(args[0])}"
        return f"list of {type_name(args[0])}" if args else "list"
    if dataclasses.is_dataclass(tp):
        return f"group {tp.__name__}"
    return getattr(tp, "__name__", str(tp))


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _split_list(text: str) -> list[Any]:
    """Items of `[a,b]` or `(a,b)`: JSON when it parses, else split on commas (Hydra's unquoted strings)."""
    text = text.strip()
    if len(text) < 2 or (text[0], text[-1]) not in (("[", "]"), ("(", ")")):
        raise _Mismatch
    try:
        parsed = json.loads("[" + text[1:-1] + "]")
    except json.JSONDecodeError:
        inner = text[1:-1].strip()
        return [_unquote(item) for item in inner.split(",")] if inner else []
    return parsed


def _sequence_args(tp: Any) -> tuple[type, list[Any]]:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple and args and args[-1] is not Ellipsis:
        return tuple, list(args)
    return origin, [args[0] if args else Any]


def parse_text(text: str, tp: Any) -> Any:
    """The value `text` means for a field typed `tp`; raises _Mismatch when it fits none of its forms."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    stripped = text.strip()
    if tp is Any:
        return _unquote(stripped)
    if origin in (Union, types.UnionType):
        if type(None) in args and stripped in NULLS:
            return None
        for arg in sorted((a for a in args if a is not type(None)), key=lambda a: a is str):
            try:
                return parse_text(text, arg)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is Literal:
        for choice in args:
            if _unquote(stripped) == str(choice):
                return choice
        raise _Mismatch
    if origin in (tuple, list):
        container, item_types = _sequence_args(tp)
        items = _split_list(stripped)
        if container is tuple and len(item_types) > 1 and len(items) != len(item_types):
            raise _Mismatch
        types_ = item_types if len(item_types) == len(items) else item_types * len(items)
        values = [parse_text(i, t) if isinstance(i, str) else coerce(i, t) for i, t in zip(items, types_)]
        return tuple(values) if container is tuple else values
    if tp is bool:
        if stripped in TRUE or stripped in FALSE:
            return stripped in TRUE
        raise _Mismatch
    if tp is int:
        try:
            return int(stripped)
        except ValueError:
            raise _Mismatch from None
    if tp is float:
        try:
            return float(stripped)
        except ValueError:
            raise _Mismatch from None
    if tp is str:
        return _unquote(text)
    raise _Mismatch


def coerce(value: Any, tp: Any) -> Any:
    """`value` (already a Python/JSON object) checked against `tp`: ints widen to floats, lists to tuples."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is Literal:
        if value in args and not isinstance(value, bool):
            return value
        raise _Mismatch
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        container, item_types = _sequence_args(tp)
        if container is tuple and len(item_types) > 1 and len(value) != len(item_types):
            raise _Mismatch
        types_ = item_types if len(item_types) == len(value) else item_types * len(value)
        values = [coerce(v, t) for v, t in zip(value, types_)]
        return tuple(values) if container is tuple else values
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp in (bool, int, str) and isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        return value
    raise _Mismatch


def _leaf_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    for name, tp in field_types(cls).items():
        keys += _leaf_keys(tp, f"{prefix}{name}.") if dataclasses.is_dataclass(tp) else [f"{prefix}{name}"]
    return keys


def _unknown(key: str, config: Any, parts: list[str], depth: int) -> ValueError:
    """The error for a key with no field at `parts[depth]`: closest keys overall, else the valid ones there."""
    keys = _leaf_keys(type(config))
    close = difflib.get_close_matches(key, keys, n=3, cutoff=0.6)
    if close:
        return ValueError(f"unknown config key {key!r}. Did you mean {', '.join(close)}?")
    here = ".".join(parts[:depth])
    start = len(here) + 1 if here else 0
    options = sorted({k[start:].split(".")[0] for k in keys if k.startswith(here + "." if here else "")})
    where = f"under {here!r}" if here else "at the top level"
    return ValueError(f"unknown config key {key!r}: no {parts[depth]!r} {where}. Valid: {', '.join(options)}")


def _resolve(config: Any, key: str) -> tuple[list[str], Any]:
    """The path of `key` and the type of its leaf; ValueError with suggestions when it names no leaf."""
    parts = key.split(".")
    cls = type(config)
    for depth, part in enumerate(parts):
        types_ = field_types(cls) if dataclasses.is_dataclass(cls) else {}
        if part not in types_:
            raise _unknown(key, config, parts, depth)
        cls = types_[part]
    if dataclasses.is_dataclass(cls):
        example = _leaf_keys(cls, key + ".")[0]
        raise ValueError(f"{key!r} is a group of settings, not one value: set its fields, e.g. {example}=...")
    return parts, cls


def _set(config: Any, path: list[str], value: Any, pending: dict[tuple[str, ...], dict[str, Any]]) -> None:
    """Set a leaf of a deep-copied config; fields of a frozen dataclass are queued in `pending` instead."""
    node = config
    for depth, part in enumerate(path[:-1]):
        child = getattr(node, part)
        params = getattr(type(child), "__dataclass_params__", None)
        if params is not None and params.frozen:
            if depth + 2 != len(path):
                raise ValueError(f"{'.'.join(path)}: nested groups inside a frozen config are not supported")
            pending.setdefault(tuple(path[: depth + 1]), {})[path[-1]] = value
            return
        node = child
    setattr(node, path[-1], value)


def _apply_pending(config: Any, pending: dict[tuple[str, ...], dict[str, Any]], sources: dict[str, str]) -> None:
    """Rebuild each frozen config with its queued fields (through `.replace` when it has one, so it validates)."""
    for path, changes in pending.items():
        parent = config
        for part in path[:-1]:
            parent = getattr(parent, part)
        frozen = getattr(parent, path[-1])
        rebuild = getattr(frozen, "replace", None) or functools.partial(dataclasses.replace, frozen)
        try:
            setattr(parent, path[-1], rebuild(**changes))
        except (ValueError, TypeError) as err:
            keys = ", ".join(sources[".".join(path + (name,))] for name in changes)
            raise ValueError(f"{keys}: invalid {'.'.join(path)}: {err}") from None


def _split_override(override: str) -> tuple[str, str]:
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"override {override!r}: expected key=value, e.g. trainer.max_iter=1000")
    return expand_alias(key.strip()), text


def apply_overrides(config: Any, overrides: list[str]) -> Any:
    """A copy of `config` with each `a.b.c=value` applied in order; ValueError naming the key on any problem."""
    config = copy.deepcopy(config)
    pending: dict[tuple[str, ...], dict[str, Any]] = {}
    sources: dict[str, str] = {}
    for override in overrides:
        key, text = _split_override(override)
        path, tp = _resolve(config, key)
        try:
            value = parse_text(text, tp)
        except _Mismatch:
            raise ValueError(f"{key}: expected {type_name(tp)}, got {text!r}") from None
        _set(config, path, value, pending)
        sources[key] = override
    _apply_pending(config, pending, sources)
    return config


def apply_values(config: Any, values: dict[str, Any]) -> Any:
    """A copy of `config` with {dotted key: Python value} set and type-checked (e.g. from a saved config.json)."""
    config = copy.deepcopy(config)
    pending: dict[tuple[str, ...], dict[str, Any]] = {}
    sources: dict[str, str] = {}
    for raw_key, raw in values.items():
        key = expand_alias(raw_key)
        path, tp = _resolve(config, key)
        try:
            value = coerce(raw, tp)
        except _Mismatch:
            raise ValueError(f"{key}: expected {type_name(tp)}, got {raw!r}") from None
        _set(config, path, value, pending)
        sources[key] = f"{key}={raw!r}"
    _apply_pending(config, pending, sources)
    return config


def format_value(value: Any) -> str:
    """A value in override syntax, so `key=format_value(v)` parses back to v."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(json.dumps(v) if isinstance(v, str) else format_value(v) for v in value) + "]"
    return str(value)
