"""TOML run configs <-> frozen dataclasses.

`load_config(cls, path)` reads a TOML file into a (nested) frozen dataclass. Unknown keys are
an error that names them; missing keys take the dataclass defaults, which are written once, on
the fields. `to_dict` gives the resolved config back as plain data (saved next to outputs and
inside checkpoints).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from sfpp.errors import SfppError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any], *, where: str = "") -> T:
    """Build dataclass `cls` from a dict, recursing into nested dataclass fields."""
    if not isinstance(data, dict):
        raise SfppError(f"[{where or 'config'}] must be a table, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        section = f" in [{where}]" if where else ""
        raise SfppError(f"unknown config key(s){section}: {', '.join(unknown)}; valid keys: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(hints[name], value, f"{where}.{name}" if where else name)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise SfppError(f"bad config{f' in [{where}]' if where else ''}: {e}") from None


def _convert(tp, value, where: str):
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where=where)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        for a in args:
            try:
                return _convert(a, value, where)
            except (SfppError, TypeError, ValueError):
                continue
        raise SfppError(f"config key {where} has a value of the wrong type: {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise SfppError(f"config key {where} must be a list, got {value!r}")
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        return tuple(_convert(inner, v, where) for v in value)
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise SfppError(f"config key {where} must be one of {list(typing.get_args(tp))}, got {value!r}")
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise SfppError(f"config key {where} must be a {tp.__name__}, got {value!r}")
    if tp is int and isinstance(value, bool):
        raise SfppError(f"config key {where} must be an int, got {value!r}")
    return value


def load_config(cls: type[T], path: str | Path) -> T:
    from sfpp.files import read_text_file

    path = Path(path)
    text = read_text_file(path, what="config file", hint="give a TOML run config, e.g. examples/distill_debug.toml")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SfppError(f"config file {path} is not valid TOML: {e}") from None
    return from_dict(cls, data)


def to_dict(obj) -> dict[str, Any]:
    """A JSON-serialisable dict of a (nested) dataclass."""
    return json.loads(json.dumps(dataclasses.asdict(obj), default=str))


def to_toml(data: dict[str, Any]) -> str:
    """A minimal TOML writer for resolved configs (tables of scalars and lists)."""
    lines: list[str] = []

    def scalar(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        return json.dumps(str(v))

    def emit(table: dict, prefix: str):
        plain = {k: v for k, v in table.items() if not isinstance(v, dict) and v is not None}
        subs = {k: v for k, v in table.items() if isinstance(v, dict)}
        if prefix and plain:
            lines.append(f"[{prefix}]")
        for k, v in plain.items():
            lines.append(f"{k} = {scalar(v)}")
        if plain:
            lines.append("")
        for k, v in subs.items():
            emit(v, f"{prefix}.{k}" if prefix else k)

    emit(data, "")
    return "\n".join(lines)
