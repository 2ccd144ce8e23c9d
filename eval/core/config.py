"""Typed configs: frozen dataclasses built from a preset and a TOML file by one generic checker.

A config class declares its keys, their types (annotations) and their ranges or choices (`setting`);
`overlay(cls, preset_overrides, toml_data)` merges partial nested dicts over the class defaults and
`build` checks every leaf: unknown keys, types, finite numbers, ranges, choices. Every error is one
`UserError` line naming the dotted key, so a typo in a TOML file or a Python override stops the
command before any stage starts. Cross-field rules live in the class's `__post_init__`.
"""
from __future__ import annotations

import dataclasses
import math
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path

from antidistill.watermark.errors import UserError, read_bytes

__all__ = ["setting", "build", "overlay", "from_presets", "as_dict", "load_toml", "check_name"]


def setting(default, *, lo=None, hi=None, lo_open: bool = False, hi_open: bool = False, choices=None):
    """A dataclass field with its allowed range (lo/hi, inclusive unless *_open) or choices (for a
    tuple field, each item's). Mutable defaults are not allowed: use tuples."""
    meta = {"lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open, "choices": tuple(choices) if choices else None}
    if isinstance(default, dict):
        return dataclasses.field(default_factory=lambda: dict(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _kind(tp) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_kind(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "none"
    if origin is tuple or tp is tuple:
        return "a list"
    if origin is dict or tp is dict or dataclasses.is_dataclass(tp):
        return "a table"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _value(tp, v, name: str):
    """`v` converted to type `tp` (TOML lists to tuples, ints to floats), or one UserError line."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if v is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _value(a, v, name)
            except UserError:
                continue
        raise UserError(f"config key {name} must be {_kind(tp)}, got {v!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(v, Mapping):
            raise UserError(f"config key {name} must be a table, got {v!r}")
        return build(tp, v, f"{name}.")
    if origin is tuple:
        if not isinstance(v, (list, tuple)):
            raise UserError(f"config key {name} must be a list, got {v!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_value(args[0], x, name) for x in v)
        if len(v) != len(args):
            raise UserError(f"config key {name} must be a list of {len(args)} items, got {v!r}")
        return tuple(_value(a, x, name) for a, x in zip(args, v))
    if tp is dict or origin is dict:
        if not isinstance(v, Mapping):
            raise UserError(f"config key {name} must be a table, got {v!r}")
        return dict(v)
    if tp is float:
        if not _is_number(v):
            raise UserError(f"config key {name} must be a number, got {v!r}")
        if not math.isfinite(v):
            raise UserError(f"config key {name} must be finite, got {v!r}")
        return float(v)
    if tp is int:
        if not isinstance(v, int) or isinstance(v, bool):
            raise UserError(f"config key {name} must be an integer, got {v!r}")
        return v
    if tp in (bool, str):
        if type(v) is not tp:
            raise UserError(f"config key {name} must be {_kind(tp)}, got {v!r}")
        return v
    raise TypeError(f"config field {name}: unsupported type {tp!r}")


def _check_range(meta: Mapping, v, name: str) -> None:
    choices = meta.get("choices")
    if choices:
        items = v if isinstance(v, tuple) else (v,)
        bad = [x for x in items if x not in choices]
        if bad:
            raise UserError(f"config key {name}: {bad[0]!r} is not one of {', '.join(map(str, choices))}")
        if v == ():
            raise UserError(f"config key {name} must list at least one of {', '.join(map(str, choices))}")
        return
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is None and hi is None:
        return
    for x in (v if isinstance(v, tuple) else (v,)):
        if x is None or not _is_number(x):
            continue
        below = lo is not None and (x < lo or (x == lo and meta.get("lo_open")))
        above = hi is not None and (x > hi or (x == hi and meta.get("hi_open")))
        if below or above:
            low = f"{lo} {'<' if meta.get('lo_open') else '<='} " if lo is not None else ""
            high = f" {'<' if meta.get('hi_open') else '<='} {hi}" if hi is not None else ""
            raise UserError(f"config key {name} must lie in {low}x{high}, got {v!r}")


def build(cls, data: Mapping, where: str = ""):
    """An instance of the frozen dataclass `cls` from a nested dict, every leaf checked."""
    if not isinstance(data, Mapping):
        raise UserError(f"config {where.rstrip('.') or 'file'} must be a table, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise UserError(f"unknown config key {where}{unknown[0]!r}; valid keys here: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for k, f in fields.items():
        if k not in data:
            continue
        name = f"{where}{k}"
        v = _value(hints[k], data[k], name)
        _check_range(f.metadata, v, name)
        values[k] = v
    return cls(**values)


def _merged(cls, base: dict, over: Mapping, where: str) -> dict:
    """`over` merged into `base` key by key, into sub-tables of nested dataclass fields."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    out = dict(base)
    for k, v in over.items():
        if k not in fields:
            raise UserError(f"unknown config key {where}{k!r}; valid keys here: {', '.join(fields)}")
        sub = hints[k]
        if dataclasses.is_dataclass(sub):
            if not isinstance(v, Mapping):
                raise UserError(f"config key {where}{k} must be a table, got {v!r}")
            out[k] = _merged(sub, out.get(k, {}), v, f"{where}{k}.")
        else:
            out[k] = v
    return out


def overlay(cls, *layers: Mapping | None, where: str = ""):
    """The defaults of `cls`, then each partial nested dict in turn (a preset's overrides, then a
    TOML file's), merged into sub-tables (a plain `dict` field is replaced whole), then `build`."""
    data: dict = {}
    for layer in layers:
        if layer:
            data = _merged(cls, data, layer, where)
    return build(cls, data, where)


def from_presets(cls, presets: Mapping[str, Mapping], path: str | Path | None = None, preset: str | None = None,
                 default: str = "default"):
    """A command's config: the preset named `preset` (else `default`), or the TOML file at `path`
    over the preset its own `preset` key names (else `preset`); a file without `name` is named
    after its stem. Every error is one line, naming the file when there is one."""
    name = preset or default
    if not isinstance(name, str) or name not in presets:
        raise UserError(f"unknown preset {name!r}; valid presets: {', '.join(presets)}")
    if path is None:
        return overlay(cls, presets[name])
    data = load_toml(path)
    base = data.pop("preset", name)
    if not isinstance(base, str) or base not in presets:
        raise UserError(f"{path}: unknown preset {base!r}; valid presets: {', '.join(presets)}")
    try:
        return overlay(cls, presets[base], {"name": Path(path).stem}, data)
    except UserError as err:
        raise UserError(f"{path}: {err}") from None


def as_dict(cfg) -> dict:
    """A config as plain JSON-able nested dicts and lists (cache keys, config.json)."""
    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, Mapping):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(cfg)


def load_toml(path: str | Path, what: str = "config file") -> dict:
    """A TOML file as a dict, or one UserError line (missing, unreadable, not UTF-8, not TOML)."""
    path = Path(path)
    try:
        return tomllib.loads(read_bytes(path, what).decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid TOML ({err})") from None


def check_name(name: str, where: str = "name") -> str:
    """A config's name becomes a results folder: letters, digits, . _ - only."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise UserError(f"config key {where} {name!r} must be a plain folder name (letters, digits, . _ -)")
    return name
