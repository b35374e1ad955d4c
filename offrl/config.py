"""Flat, typed config dataclasses: build them from overrides, files and ``key=value`` strings.

A config only ever changes through ``make_config``: every key is checked
against the dataclass (an unknown key is an error naming it, with the
closest known keys) and every value is converted to the field's type.

Config files (``offrl config template ALGO`` writes one) have three sections::

    {"#": "a comment", "algo": "bc", "algo_config": {"# lr": "Adam learning rate", "lr": 0.001, ...},
     "train": {"steps": 1000000, ...}}

Keys starting with ``#`` are comments. A flat mapping of algorithm keys (plus
an optional ``algo``) is read too.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import io
import json
import textwrap
import tokenize
import types
import typing
from collections.abc import Collection, Iterator
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
            raise unknown_key_error(key, names, where=source, context=f" for {config_class.__name__}")
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


def unknown_key_error(key: str, known: Collection[str], *, where: str, context: str = "") -> ConfigError:
    """``{where}: unknown key 'lrr'{context}; did you mean 'lr'?`` (the known keys when none is close)."""
    close = difflib.get_close_matches(key, list(known), n=3)
    hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else f"known keys: {', '.join(known)}"
    return ConfigError(f"{where}: unknown key {key!r}{context}; {hint}")


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
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as error:
        raise ConfigError(f"{path}: not a JSON or YAML text file ({error})") from None
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


def field_comments(cls: type) -> dict[str, str]:
    """Each field's help text, read from the class source: a string literal on the line after the field
    (the convention tyro shows as help), else a trailing ``# comment`` on the field's line, else the comment
    lines right above the field.

    Inherited fields get the comment of the class that defines them.
    """
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        comments.update(_own_field_comments(klass))
    if dataclasses.is_dataclass(cls):
        names = {field.name for field in dataclasses.fields(cls)}
        return {name: text for name, text in comments.items() if name in names}
    return comments


def _own_field_comments(klass: type) -> dict[str, str]:
    try:
        source = textwrap.dedent(inspect.getsource(klass))
    except (OSError, TypeError):  # a builtin, or a class defined where there is no source file
        return {}
    comments: dict[str, str] = {}
    previous_field: str | None = None
    for statement in _class_body_statements(source):
        code = [token for token in statement if token.type not in (tokenize.COMMENT, tokenize.NL)]
        if len(code) >= 2 and code[0].type == tokenize.NAME and code[1].string == ":":
            previous_field = code[0].string
            first_line = code[0].start[0]
            above = [token for token in statement if token.type == tokenize.COMMENT and token.start[0] < first_line]
            on_line = [token for token in statement if token.type == tokenize.COMMENT and token.start[0] >= first_line]
            text = _comment_text(on_line) or _comment_text(above)
            if text:
                comments[previous_field] = text
        elif previous_field and code and all(token.type == tokenize.STRING for token in code):
            docstring = inspect.cleandoc(ast.literal_eval(" ".join(token.string for token in code)))
            comments[previous_field] = " ".join(docstring.split())
            previous_field = None
        else:
            previous_field = None
    return comments


def _comment_text(comments: list[tokenize.TokenInfo]) -> str:
    return " ".join(" ".join(token.string.lstrip("#") for token in comments).split())


def _class_body_statements(source: str) -> Iterator[list[tokenize.TokenInfo]]:
    """The tokens of each statement directly in the body of the class ``source`` defines (not in its methods),
    with the comment lines right above it."""
    depth = 0
    statement: list[tokenize.TokenInfo] = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.INDENT:
            depth += 1
        elif token.type == tokenize.DEDENT:
            depth -= 1
        elif token.type == tokenize.NEWLINE:
            if depth == 1:
                yield statement
            statement = []
        elif token.type == tokenize.NL and all(t.type == tokenize.COMMENT for t in statement):
            if not token.line.strip():
                statement = []  # a blank line ends a block of comment lines: they belong to no field
        else:
            statement.append(token)


SECTIONS = ("algo", "algo_config", "train")
COMMENT_PREFIX = "#"


def section_template(config_class: type, *, exclude: Collection[str] = ()) -> dict[str, Any]:
    """Every field of ``config_class`` (but ``exclude``) with its default, each after a ``"# field"`` comment key."""
    comments = field_comments(config_class)
    section: dict[str, Any] = {}
    for name, value in config_to_dict(config_class()).items():
        if name in exclude:
            continue
        if name in comments:
            section[f"{COMMENT_PREFIX} {name}"] = comments[name]
        section[name] = value
    return section


def config_template(algo_name: str, *, train: dict[str, Any] | None = None) -> dict[str, Any]:
    """A config file for ``algo_name``: every hyperparameter with its default and comment (``algo_config``),
    and ``train`` as the ``train`` section when given (``offrl config template`` adds ``offrl train``'s options).
    """
    from offrl.algos.registry import get_algo_class  # the registry imports this module

    algo_class = get_algo_class(algo_name)
    template: dict[str, Any] = {
        COMMENT_PREFIX: (
            f"offrl config for {algo_name} ({algo_class.paper}). Keys starting with '#' are comments and are ignored. "
            "Train with: offrl train --config FILE --dataset DATASET [--env ENV]"
        ),
        "algo": algo_name,
        f"{COMMENT_PREFIX} algo_config": "the algorithm's hyperparameters; --set key=value on the command line overrides them",
        "algo_config": section_template(algo_class.Config),
    }
    if train is not None:
        template[f"{COMMENT_PREFIX} train"] = "offrl train's options; a flag written on the command line overrides its value here"
        template["train"] = train
    return template


def template_text(template: dict[str, Any]) -> str:
    """JSON, one key per line, each value (lists included) on its key's line."""
    return _json_lines(template) + "\n"


def _json_lines(value: Any, depth: int = 0) -> str:
    if not isinstance(value, dict) or not value:
        return json.dumps(value)
    inner = "  " * (depth + 1)
    items = [f"{inner}{json.dumps(key)}: {_json_lines(item, depth + 1)}" for key, item in value.items()]
    return "{\n" + ",\n".join(items) + "\n" + "  " * depth + "}"


def write_template(
    algo_name: str, path: str | Path, *, train: dict[str, Any] | None = None, overwrite: bool = False
) -> Path:
    """Write ``config_template(algo_name, train=train)`` to ``path`` as JSON (atomically)."""
    from offrl.io import write_text

    path = Path(path)
    if path.exists() and not overwrite:
        raise ConfigError(f"{path} already exists: refusing to overwrite it")
    write_text(path, template_text(config_template(algo_name, train=train)))
    return path


def read_config(path: str | Path) -> tuple[str | None, dict[str, Any], dict[str, Any]]:
    """A config file as ``(algorithm name or None, algo_config overrides, train overrides)``, comments dropped.

    Reads the sectioned layout (``algo``, ``algo_config``, ``train``; an unknown top-level key is an error)
    and a flat mapping of hyperparameters with an optional ``algo``. The overrides are not checked here:
    ``make_config`` checks them against the algorithm's config, the CLI the train keys against its options.
    """
    data = _without_comments(read_config_file(path))
    if "algo_config" not in data and "train" not in data:  # the flat layout
        algo = data.pop("algo", None)
        return _algo_name(algo, path), data, {}
    for key in data:
        if key not in SECTIONS:
            raise unknown_key_error(str(key), SECTIONS, where=str(path), context=" at the top level")
    return _algo_name(data.get("algo"), path), _section(data, "algo_config", path), _section(data, "train", path)


def _without_comments(data: dict[Any, Any]) -> dict[Any, Any]:
    return {
        key: _without_comments(value) if isinstance(value, dict) else value
        for key, value in data.items()
        if not str(key).startswith(COMMENT_PREFIX)
    }


def _algo_name(value: Any, path: str | Path) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{path}: algo: expected an algorithm name, got {value!r}")
    return value


def _section(data: dict[str, Any], name: str, path: str | Path) -> dict[str, Any]:
    section = data.get(name)
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: {name}: expected a mapping of keys to values, got {section!r}")
    return section
