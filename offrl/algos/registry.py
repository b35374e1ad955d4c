"""One registry: ``@register`` makes an algorithm visible to ``make_algo`` and the CLI."""

from __future__ import annotations

import dataclasses
import difflib
import math
import threading
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import torch

from offrl.algos.base import Algorithm
from offrl.config import make_config
from offrl.errors import AlgorithmError, ConfigError, OffrlError

_REGISTRY: dict[str, type[Algorithm]] = {}


def register(
    name: str, *, paper: str, action_type: str = "continuous", online: bool = False
) -> Callable[[type[Algorithm]], type[Algorithm]]:
    """``online=True`` marks algorithms that learn from their own interaction by default
    (given a dataset and an environment, they train hybrid rather than offline)."""

    def decorate(cls: type[Algorithm]) -> type[Algorithm]:
        if name in _REGISTRY:
            raise ValueError(f"algorithm {name!r} is registered twice")
        if not dataclasses.is_dataclass(cls.Config):
            raise TypeError(f"{cls.__name__}.Config must be a dataclass")
        cls.name, cls.paper, cls.action_type, cls.online = name, paper, action_type, online
        _REGISTRY[name] = cls
        return cls

    return decorate


def get_algo_class(name: str) -> type[Algorithm]:
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown algorithm {name!r}{hint} (registered: {', '.join(sorted(_REGISTRY))})") from None


def list_algos() -> list[type[Algorithm]]:
    _load_builtin()
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def make_algo(
    name: str,
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    config: Any = None,
    device: torch.device | str = "cpu",
    seed: int | None = None,
    **overrides: Any,
) -> Algorithm:
    """Build a registered algorithm. ``config`` (a Config instance or dict) and keyword overrides set hyperparameters.

    With ``seed``, the networks' initial weights depend only on it (the global
    RNG is left as it was).
    """
    cls = get_algo_class(name)
    if config is not None and not isinstance(config, (dict, cls.Config)):
        raise ConfigError(f"{name}: config must be a {cls.Config.__name__} or a dict of overrides, not {type(config).__name__} "
                          "(a config file is read with offrl.read_config)")
    if isinstance(config, dict):
        overrides = {**config, **overrides}
        config = None
    resolved = make_config(cls.Config, overrides, base=config, source=f"{name} config")
    check_common_settings(resolved, f"{name} config")
    with seeding_lock, torch.random.fork_rng(devices=[]):  # the lock: seeds of a group are built in parallel threads
        if seed is not None:
            torch.manual_seed(seed)
        try:
            algo = cls(observation_space, action_space, resolved)
        except OffrlError:
            raise
        except ValueError as error:  # the algorithm refuses these settings: the user's to change, not a crash
            message = str(error)
            raise AlgorithmError(message if message.startswith(name) else f"{name}: {message}") from None
    return algo.to(device)


def check_common_settings(config: Any, source: str) -> None:
    """The settings most algorithms share, in their ranges: a wrong one is one ConfigError naming it, not a
    failure deep inside the sampler, the optimizer or a layer's constructor."""
    values = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else {}
    problems = []
    for key, value in values.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            if key.endswith("hidden_dims") and isinstance(value, (list, tuple)) and any(not isinstance(w, int) or w < 1 for w in value):
                problems.append(f"{key}={list(value)}: every width must be a positive integer")
            continue
        if key == "batch_size" and value < 1:
            problems.append(f"batch_size={value}: must be at least 1")
        elif (key == "lr" or key.endswith("_lr")) and not (math.isfinite(value) and value >= 0):
            problems.append(f"{key}={value}: a learning rate must be a finite number >= 0")
        elif key in ("discount", "tau") and not 0.0 <= value <= 1.0:
            problems.append(f"{key}={value}: must be in [0, 1]")
    if problems:
        raise ConfigError(f"{source}: {problems[0]}")


# Held while a thread seeds torch's process-wide generator or builds networks from it: the seeds of a group are
# built and start their runs in parallel threads, and one run's seeding must not reset another's build midway.
seeding_lock = threading.Lock()


def _load_builtin() -> None:
    import offrl.algos  # noqa: F401  (importing the package registers the built-in algorithms)
