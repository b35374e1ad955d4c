"""Gymnasium spaces to and from plain JSON, so checkpoints and datasets never pickle."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


def space_to_json(space: gym.Space) -> dict[str, Any]:
    if isinstance(space, gym.spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": np.dtype(space.dtype).name,
            "low": _bound_to_json(space.low),
            "high": _bound_to_json(space.high),
        }
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.Dict):
        return {"type": "Dict", "spaces": {k: space_to_json(v) for k, v in space.spaces.items()}}
    raise TypeError(f"offrl cannot store a {type(space).__name__} space")


def space_from_json(data: dict[str, Any]) -> gym.Space:
    kind = data.get("type")
    if kind == "Box":
        shape = tuple(data["shape"])
        dtype = np.dtype(data["dtype"])
        low = _bound_from_json(data["low"], shape).astype(dtype)
        high = _bound_from_json(data["high"], shape).astype(dtype)
        return gym.spaces.Box(low=low, high=high, dtype=dtype)
    if kind == "Discrete":
        return gym.spaces.Discrete(int(data["n"]), start=int(data.get("start", 0)))
    if kind == "Dict":
        return gym.spaces.Dict({k: space_from_json(v) for k, v in data["spaces"].items()})
    raise ValueError(f"unknown space type {kind!r}")


def _bound_to_json(bound: np.ndarray) -> list | float | str:
    flat = np.asarray(bound, dtype=np.float64).ravel()
    if flat.size and np.all(flat == flat[0]):
        return _float_to_json(flat[0])
    return [_float_to_json(v) for v in flat]


def _float_to_json(value: float) -> float | str:
    if np.isposinf(value):
        return "inf"
    if np.isneginf(value):
        return "-inf"
    return float(value)


def _bound_from_json(value: list | float | str, shape: tuple[int, ...]) -> np.ndarray:
    """A bound written by ``_bound_to_json``: one number for the whole space, or one per element."""
    if isinstance(value, list):
        return np.asarray([float(v) for v in value], dtype=np.float64).reshape(shape)
    return np.full(shape, float(value))


def flat_dim(space: gym.Space) -> int:
    """Width of a Box or Discrete space as a network sees it."""
    if isinstance(space, gym.spaces.Box):
        return int(np.prod(space.shape))
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    raise TypeError(f"{type(space).__name__} has no flat width")


def is_continuous(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Box)


def as_float32(space: gym.Space) -> gym.Space:
    """Observation spaces as offrl stores them: float64 Boxes (MuJoCo) as float32, boolean Boxes
    (MinAtar's channels) as uint8 0/1."""
    if isinstance(space, gym.spaces.Dict):
        return gym.spaces.Dict({k: as_float32(v) for k, v in space.spaces.items()})
    if isinstance(space, gym.spaces.Box) and space.dtype == np.float64:
        return gym.spaces.Box(space.low.astype(np.float32), space.high.astype(np.float32), space.shape, np.float32)
    if isinstance(space, gym.spaces.Box) and space.dtype == np.bool_:
        return gym.spaces.Box(0, 1, space.shape, np.uint8)
    return space
