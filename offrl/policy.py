"""A trained policy as a plain callable: observations in, actions out, normalization included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from offrl.algos.base import Algorithm
from offrl.train.checkpoint import load_algo
from offrl.train.evaluate import to_tensor


class Policy:
    """Call with one observation (returns one action) or a batch (returns a batch).

    Observation normalization and action scaling are part of the algorithm's
    modules, so what goes in is a raw environment observation and what comes
    out is an action in the environment's bounds.
    """

    def __init__(self, algo: Algorithm) -> None:
        self.algo = algo.train(False)
        self.observation_space = algo.observation_space
        self.action_space = algo.action_space

    @property
    def device(self) -> torch.device:
        return self.algo.device

    def __call__(self, observations: Any, *, deterministic: bool = True) -> np.ndarray:
        single = _is_single(observations, self.observation_space)
        if single:
            observations = _add_batch_axis(observations)
        with torch.no_grad():
            actions = self.algo.act(to_tensor(observations, self.device), deterministic=deterministic).cpu().numpy()
        return actions[0] if single else actions


def load_policy(path: str | Path, *, device: str | torch.device = "cpu", algo: str | None = None) -> Policy:
    """The policy of a run directory's latest checkpoint (or of one checkpoint file)."""
    return Policy(load_algo(path, algo=algo, device=device, optimizers=False))


def _is_single(observations: Any, space: gym.Space) -> bool:
    if isinstance(space, gym.spaces.Dict):
        key = next(iter(space.spaces))
        return np.ndim(observations[key]) == len(space.spaces[key].shape)
    return np.ndim(observations) == len(space.shape)


def _add_batch_axis(observations: Any) -> Any:
    if isinstance(observations, dict):
        return {k: np.asarray(v)[None] for k, v in observations.items()}
    return np.asarray(observations)[None]
