"""A trained policy as a plain callable: observations in, actions out, normalization included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from offrl.algos.base import Algorithm
from offrl.errors import OffrlError
from offrl.train.checkpoint import load_algo


class Policy:
    """Call with one observation (returns one action) or a batch (returns a batch).

    Observation normalization and action scaling are part of the algorithm's
    modules, so what goes in is a raw environment observation and what comes
    out is an action in the environment's bounds.

    For a policy with memory (Decision Transformer's context, BC-RNN's hidden
    state, stacked frames), call ``start_episode(num_envs)`` at each reset and
    ``observe(reward)`` after each step; for the others both are harmless
    no-ops. A call with another number of observations than the episodes
    running starts that many new episodes.
    """

    def __init__(self, algo: Algorithm) -> None:
        self.algo = algo.train(False)
        self.observation_space = algo.observation_space
        self.action_space = algo.action_space
        self._rollouts: dict[bool, Any] = {}
        self._batch = 1

    @property
    def device(self) -> torch.device:
        return self.algo.device

    def start_episode(self, num_envs: int = 1) -> None:
        self._batch = num_envs
        self._rollouts = {}

    def observe(self, rewards: Any) -> None:
        for rollout in self._rollouts.values():
            rollout.observe(np.atleast_1d(np.asarray(rewards, dtype=np.float64)))

    def __call__(self, observations: Any, *, deterministic: bool = True) -> np.ndarray:
        if isinstance(self.observation_space, gym.spaces.Dict):
            missing = sorted(set(self.observation_space.spaces) - set(observations))
            if missing:
                goals = [key for key in missing if key.startswith("goal_")]
                hint = " (a goal-conditioned policy: add the goal with offrl.data.goals.GoalObservation)" if goals else ""
                raise OffrlError(f"the observation has no {', '.join(missing)}: the policy reads {', '.join(self.observation_space.spaces)}{hint}")
        single = _is_single(observations, self.observation_space)
        if single:
            observations = _add_batch_axis(observations)
        count = len(next(iter(observations.values())) if isinstance(observations, dict) else observations)
        if count != self._batch:  # a policy with memory keeps one state per environment
            self.start_episode(count)
        if deterministic not in self._rollouts:
            self._rollouts[deterministic] = self.algo.rollout_policy(self._batch, deterministic=deterministic)
            self._rollouts[deterministic].start_episode(None)
        actions = self._rollouts[deterministic](observations)
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
