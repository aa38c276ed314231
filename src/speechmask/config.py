"""Training configuration as data: nested frozen dataclasses <-> plain dicts <-> TOML tables.

``speechmask train --config FILE.toml --set mix.snr_low_db=-10`` and the recipe files
(:mod:`speechmask.recipe`) describe a :class:`~speechmask.train.TrainConfig` with the same
tables: top-level fields, then ``[model]``, ``[mix]``, ``[mix.augment]``, ``[mix.augment.rooms]``.
Every default lives in the dataclasses; a file or an override names only what it changes.
Unknown keys are one-line errors that list the known ones, so a typo never trains silently
with a default.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


class ConfigError(ValueError):
    """A configuration file or override cannot be used. ``str(err)`` is one line."""


def _nested_types(cls: type) -> dict[str, type]:
    """Fields of dataclass ``cls`` whose type is itself a dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)
            if dataclasses.is_dataclass(hints.get(f.name))}


def from_dict(cls: type, data: Mapping[str, Any], where: str = "") -> Any:
    """An instance of dataclass ``cls`` from ``data``: missing keys take the defaults, nested
    tables become nested dataclasses, lists become tuples where the default is a tuple.
    :class:`ConfigError` names an unknown key (with the known ones) or a rejected value."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or cls.__name__}: expected a table, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    nested = _nested_types(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{where}.{key}" if where else key
        if key not in fields:
            raise ConfigError(f"unknown setting {name!r}; known at this level: "
                              f"{', '.join(sorted(fields))}")
        if key in nested:
            kwargs[key] = from_dict(nested[key], value, name)
        else:
            default = _default(fields[key])
            kwargs[key] = tuple(value) if isinstance(value, list) and isinstance(
                default, tuple) else value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where or 'config'}: {err}") from None


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return field.default_factory()  # type: ignore[misc]
    return None


def to_dict(obj: Any) -> dict:
    """A dataclass instance as nested plain dicts (tuples as lists: TOML and JSON have no
    tuples), the inverse of :func:`from_dict`."""
    def plain(value: Any) -> Any:
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(obj))


def diff(obj: Any, base: Any) -> dict:
    """The settings of ``obj`` that differ from ``base`` (same dataclass), nested: what a
    config file needs to say to turn ``base`` into ``obj``."""
    a, b = to_dict(obj), to_dict(base)

    def walk(x: dict, y: dict) -> dict:
        out = {}
        for key, value in x.items():
            if isinstance(value, dict) and isinstance(y.get(key), dict) and value and all(
                    not isinstance(k, int) for k in value):
                sub = walk(value, y[key])
                if sub:
                    out[key] = sub
            elif value != y.get(key):
                out[key] = value
        return out

    return walk(a, b)


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict:
    """``base`` with ``update`` laid over it, table by table (a scalar or list replaces)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) and not _is_weights(
                key):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _is_weights(key: str) -> bool:
    # Source-weight tables replace as a whole: a stage that lists its sources means these.
    return key.endswith("_sources")


def read_toml(path: str | os.PathLike) -> dict:
    """A TOML file as a dict; :class:`ConfigError` naming the file when it cannot be read."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror or err})") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None


def nest(dotted: Mapping[str, Any], where: str = "", into: dict | None = None) -> dict:
    """``{"mix.snr_low_db": -10, "lr": 1e-3}`` -> ``{"mix": {"snr_low_db": -10}, "lr": 1e-3}``,
    set into ``into`` when given (a later key replaces an earlier one). ``where`` names the
    settings in the error raised when a key is set both as a value and as a table."""
    out: dict = {} if into is None else into
    for key, value in dotted.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{where or repr(key)}: {part} is set twice, as a value and "
                                  "a table")
        node[parts[-1]] = value
    return out


def parse_overrides(items: Iterable[str]) -> dict:
    """``["mix.snr_low_db=-10", "model.cell='gru'", "mix.speech_sources={vcc2016=1}"]`` ->
    nested dict. Values are TOML values; a bare word that is not one is taken as a string
    (``model.cell=gru``)."""
    out: dict = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. mix.snr_low_db=-10")
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        nest({key: value}, f"--set {item!r}", into=out)
    return out


def dump_toml(data: Mapping[str, Any]) -> str:
    """A nested dict as TOML text (scalars, lists and tables of them): the inverse of
    :func:`read_toml` for the configs here. Tables come after the scalars of their parent."""
    lines: list[str] = []

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v) if v == v and v not in (float("inf"), float("-inf")) else (
                "nan" if v != v else ("inf" if v > 0 else "-inf"))
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, Mapping):
            return "{" + ", ".join(f"{_key(k)} = {value(x)}" for k, x in v.items()) + "}"
        if v is None:
            raise ConfigError("TOML has no null; leave the key out instead")
        raise ConfigError(f"cannot write {type(v).__name__} as TOML")

    def table(prefix: str, node: Mapping[str, Any]) -> None:
        scalars = {k: v for k, v in node.items()
                   if v is not None and not (isinstance(v, Mapping) and not _is_weights(k))}
        tables = {k: v for k, v in node.items()
                  if isinstance(v, Mapping) and not _is_weights(k)}
        if prefix and (scalars or not tables):
            lines.append(f"\n[{prefix}]")
        for k, v in scalars.items():
            lines.append(f"{_key(k)} = {value(v)}")
        for k, v in tables.items():
            table(f"{prefix}.{_key(k)}" if prefix else _key(k), v)

    table("", data)
    return "\n".join(lines).strip() + "\n"


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else f'"{k}"'
