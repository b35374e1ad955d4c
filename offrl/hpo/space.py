"""The search space: which fields of an algorithm's config dataclass evolve, and within which ranges.

A range is written ``name=low:high[:log|:int]`` or ``name=a,b,c`` (choices), as
``offrl search --space`` takes it. ``lr`` on an algorithm without an ``lr`` field
stands for every learning rate of its config (``actor_lr``, ``critic_lr``, ...),
all set to the same value.

Mutation (AgileRL's ``RLParameter``): a number is multiplied by ``grow_factor``
or ``shrink_factor`` (chosen at random) and clipped into its range; a choice is
replaced by another one.
"""

from __future__ import annotations

import dataclasses
import math
import random
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from offrl.config import config_to_dict, make_config, unknown_key_error
from offrl.errors import ConfigError

LR_ALIAS = "lr"


@dataclasses.dataclass(frozen=True)
class Hyperparameter:
    """One config field's range: ``kind`` is ``float``, ``log`` (float, sampled log-uniformly), ``int`` or ``choice``."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()
    grow_factor: float = 1.2
    shrink_factor: float = 0.8

    def __post_init__(self) -> None:
        if self.kind not in ("float", "log", "int", "choice"):
            raise ConfigError(f"hyperparameter {self.name}: kind must be float, log, int or choice, not {self.kind!r}")
        if self.kind == "choice":
            if len(self.choices) < 1:
                raise ConfigError(f"hyperparameter {self.name}: give at least one choice")
            return
        if self.low is None or self.high is None or not self.low <= self.high:
            raise ConfigError(f"hyperparameter {self.name}: the range needs low <= high (got {self.low}:{self.high})")
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ConfigError(f"hyperparameter {self.name}: the range needs finite ends (got {self.low}:{self.high})")
        if self.kind == "log" and self.low <= 0:
            raise ConfigError(f"hyperparameter {self.name}: a log range must be positive (got {self.low}:{self.high})")
        if not (self.grow_factor > 1.0 and 0.0 < self.shrink_factor < 1.0):
            raise ConfigError(f"hyperparameter {self.name}: grow factor must be > 1 and shrink factor in (0, 1)")

    def sample(self, rng: random.Random) -> Any:
        if self.kind == "choice":
            return rng.choice(self.choices)
        if self.kind == "log":
            return _round(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        if self.kind == "int":
            return rng.randint(int(self.low), int(self.high))
        return _round(rng.uniform(self.low, self.high))

    def mutate(self, value: Any, rng: random.Random) -> Any:
        if self.kind == "choice":
            others = [c for c in self.choices if c != value]
            return rng.choice(others) if others else value
        factor = self.grow_factor if rng.random() < 0.5 else self.shrink_factor
        moved = min(max(value * factor, self.low), self.high)
        if self.kind == "int":
            # a factor too small to move an int by one still moves it, as long as the range allows
            step = int(round(moved)) - int(value)
            if step == 0:
                step = 1 if factor > 1 else -1
            return int(min(max(int(value) + step, self.low), self.high))
        return _round(moved)

    def contains(self, value: Any) -> bool:
        if self.kind == "choice":
            return value in self.choices
        return self.low - 1e-12 * abs(self.low) <= value <= self.high + 1e-12 * abs(self.high)

    def to_text(self) -> str:
        if self.kind == "choice":
            return f"{self.name}=" + ",".join(str(c) for c in self.choices)
        suffix = {"log": ":log", "int": ":int", "float": ""}[self.kind]
        return f"{self.name}={self.low:g}:{self.high:g}{suffix}"


def parse_hyperparameter(text: str, *, grow_factor: float = 1.2, shrink_factor: float = 0.8) -> Hyperparameter:
    """``"lr=1e-4:1e-2:log"``, ``"batch_size=64:512:int"``, ``"tau=0.001:0.01"`` or ``"activation=relu,tanh"``."""
    name, sep, spec = text.partition("=")
    name, spec = name.strip(), spec.strip()
    if not sep or not name or not spec:
        raise ConfigError(f"--space expects name=low:high[:log|:int] or name=a,b,c, got {text!r}")
    if ":" not in spec:
        choices = tuple(_scalar(c.strip()) for c in spec.split(",") if c.strip())
        if len(choices) < 2:
            raise ConfigError(f"--space {text!r}: give a range low:high[:log|:int] or at least two choices a,b (a fixed value is --set)")
        return Hyperparameter(name, "choice", choices=choices)
    parts = spec.split(":")
    kind = "float"
    if parts[-1] in ("log", "int", "float"):
        kind = parts.pop()
    if len(parts) != 2:
        raise ConfigError(f"--space {text!r}: expected low:high with an optional :log or :int")
    try:
        low, high = float(parts[0]), float(parts[1])
    except ValueError:
        raise ConfigError(f"--space {text!r}: low and high must be numbers") from None
    return Hyperparameter(name, kind, low, high, grow_factor=grow_factor, shrink_factor=shrink_factor)


def _round(value: float) -> float:
    """Six significant digits: 0.00036, not 0.00035999999999999997 (in the lineage table and configs)."""
    return float(f"{value:.6g}")


def _scalar(text: str) -> Any:
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


class HyperparameterSpace:
    """Ranges over fields of one algorithm's config dataclass (see the module docstring)."""

    def __init__(self, hyperparameters: Sequence[Hyperparameter]) -> None:
        names = [h.name for h in hyperparameters]
        if len(set(names)) != len(names):
            raise ConfigError(f"the search space names a hyperparameter twice: {', '.join(names)}")
        self.hyperparameters = {h.name: h for h in hyperparameters}

    @classmethod
    def parse(cls, texts: Sequence[str]) -> HyperparameterSpace:
        return cls([parse_hyperparameter(t) for t in texts])

    def __iter__(self):
        return iter(self.hyperparameters.values())

    def __len__(self) -> int:
        return len(self.hyperparameters)

    @property
    def names(self) -> list[str]:
        return list(self.hyperparameters)

    def check(self, config_class: type, algo_name: str) -> None:
        """Every name is a field of ``config_class`` (or ``lr``), and every value the range can take (both
        ends, every choice) is of the field's type: an integer field needs an ``:int`` range."""
        fields = {f.name for f in dataclasses.fields(config_class)}
        try:
            types = typing.get_type_hints(config_class)
        except (NameError, TypeError):  # an annotation that does not resolve: the probes below still check
            types = {}
        for h in self:
            targets = fields_of(h.name, config_class)
            if not targets:
                raise unknown_key_error(h.name, fields | {LR_ALIAS}, where=f"--space (a {algo_name} hyperparameter)")
            if h.kind in ("float", "log") and any(types.get(t) is int for t in targets):
                suggestion = f"{h.name}={h.low:g}:{h.high:g}:int"
                raise ConfigError(f"--space {h.to_text()}: {h.name} is an integer, the range gives fractions: write {suggestion}")
            probes = list(h.choices) if h.kind == "choice" else [int(h.low), int(h.high)] if h.kind == "int" else [h.low, h.high]
            for probe in probes:  # a wrong value is a ConfigError naming "--space <range>" and the value
                make_config(config_class, {t: probe for t in targets}, source=f"--space {h.to_text()}")

    def sample(self, config: Any, rng: random.Random) -> Any:
        """``config`` with every hyperparameter of the space drawn from its range."""
        return self.apply(config, {h.name: h.sample(rng) for h in self})

    def values(self, config: Any) -> dict[str, Any]:
        """The space's hyperparameters as ``config`` sets them (``lr``: the first learning rate)."""
        data = config_to_dict(config)
        return {h.name: data[fields_of(h.name, type(config))[0]] for h in self}

    def apply(self, config: Any, values: Mapping[str, Any]) -> Any:
        updates: dict[str, Any] = {}
        for name, value in values.items():
            for field in fields_of(name, type(config)):
                updates[field] = value
        return make_config(type(config), updates, base=config, source="search space")

    def to_json(self) -> list[dict[str, Any]]:
        return [dataclasses.asdict(h) | {"choices": list(h.choices)} for h in self]

    @classmethod
    def from_json(cls, data: list[dict[str, Any]]) -> HyperparameterSpace:
        return cls([Hyperparameter(**(entry | {"choices": tuple(entry.get("choices", ()))})) for entry in data])


def fields_of(name: str, config_class: type) -> list[str]:
    """The config fields a space name sets: itself, or for ``lr`` every learning rate when there is no ``lr`` field."""
    fields = [f.name for f in dataclasses.fields(config_class)]
    if name in fields:
        return [name]
    if name == LR_ALIAS:
        return learning_rate_fields(config_class)
    return []


def learning_rate_fields(config_class: type) -> list[str]:
    return [f.name for f in dataclasses.fields(config_class) if f.name == "lr" or f.name.endswith("_lr")]


# Knobs the papers tune, searched by default besides learning rates and batch size (ranges around the paper's value).
_ALGO_KNOBS: dict[str, list[Hyperparameter]] = {
    "td3_bc": [Hyperparameter("alpha", "float", 0.5, 10.0)],
    "iql": [Hyperparameter("expectile", "float", 0.5, 0.95), Hyperparameter("temperature", "log", 0.5, 10.0)],
    "cql": [Hyperparameter("cql_weight", "log", 0.5, 20.0)],
    "awac": [Hyperparameter("awac_lambda", "log", 0.1, 10.0)],
    "crr": [Hyperparameter("beta", "log", 0.1, 10.0)],
}


def default_space(algo_name: str, config: Any) -> HyperparameterSpace:
    """Each learning rate within 10x either way of its default (log scale), the batch size from a quarter to
    four times its default, and the knobs its paper tunes."""
    values = config_to_dict(config)
    entries = []
    for field in learning_rate_fields(type(config)):
        value = values[field]
        if isinstance(value, (int, float)) and value > 0:
            entries.append(Hyperparameter(field, "log", value / 10, value * 10))
    if isinstance(values.get("batch_size"), int):
        size = values["batch_size"]
        entries.append(Hyperparameter("batch_size", "int", max(8, size // 4), size * 4))
    fields = set(values)
    entries += [h for h in _ALGO_KNOBS.get(algo_name, []) if h.name in fields]
    return HyperparameterSpace(entries)
