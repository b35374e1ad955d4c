"""Flat, typed config dataclasses: build them from overrides, files and ``key=value`` strings.

A config only ever changes through ``make_config``: every key is checked
against the dataclass (an unknown key is an error naming it, with the
closest known keys) and every value is converted to the field's type.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

from offrl.errors import ConfigError

C = TypeVar("C")

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


def make_config(config_class: type[C], overrides: dict[str, Any] | None = None, *, base: C | None = None, source: str = "config") -> C:
    """``base`` (or the defaults) with ``overrides`` applied and type-checked."""
    overrides = dict(overrides or {})
    hints = typing.get_type_hints(config_class)
    names = [f.name for f in dataclasses.fields(config_class)]
    values = dataclasses.asdict(base) if base is not None else {}
    for key, raw in overrides.items():
        if key not in names:
            close = difflib.get_close_matches(key, names, n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else f"; known keys: {', '.join(names)}"
            raise ConfigError(f"{source}: unknown key {key!r} for {config_class.__name__}{hint}")
        try:
            values[key] = coerce(raw, hints[key])
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{source}: {key}={raw!r}: {error}") from None
    config = config_class(**values)
    validate = getattr(config, "validate", None)
    if validate is not None:
        try:
            validate()
        except ValueError as error:
            raise ConfigError(f"{source}: {error}") from None
    return config


def coerce(value: Any, annotation: Any) -> Any:
    """Convert ``value`` (a string from the command line, or a JSON/YAML value) to ``annotation``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is typing.Union or origin is types.UnionType:
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return coerce(value, option)
            except (TypeError, ValueError) as error:
                errors.append(str(error))
        raise ValueError("; ".join(errors))
    if origin is Literal:
        for choice in args:
            if value == choice or (isinstance(value, str) and str(choice) == value):
                return choice
        raise ValueError(f"expected one of {', '.join(repr(a) for a in args)}")
    if origin in (tuple, list):
        items = _sequence(value)
        element = args[0] if args else str
        converted = [coerce(item, element) for item in items]
        return tuple(converted) if origin is tuple else converted
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError(f"expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise ValueError("expected an integer, got a boolean")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                raise ValueError(f"expected an integer, got {value!r}") from None
            if number.is_integer():
                return int(number)
        raise ValueError(f"expected an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, bool):
            raise ValueError("expected a number, got a boolean")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected a number, got {value!r}") from None
    if annotation is str:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {value!r}")
        return value
    return value


def _sequence(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return list(json.loads(text))
        return [part.strip() for part in text.strip("()").split(",") if part.strip()]
    if isinstance(value, (int, float)):
        return [value]
    raise ValueError(f"expected a list, got {value!r}")


def parse_assignments(assignments: typing.Sequence[str]) -> dict[str, str]:
    """``["lr=1e-3", "hidden_dims=256,256"]`` -> ``{"lr": "1e-3", "hidden_dims": "256,256"}``."""
    out: dict[str, str] = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A flat mapping from a JSON or YAML file (``.json``, ``.yaml``, ``.yml``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as error:  # json and yaml raise different error types for a malformed file
        raise ConfigError(f"{path}: cannot parse: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values at the top level")
    return data


def config_to_dict(config: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(config)))
