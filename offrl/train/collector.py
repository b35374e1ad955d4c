"""Step a vector of environments with a policy (or uniformly random actions) into a replay buffer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from offrl.data.replay import ReplayBuffer
from offrl.train.evaluate import make_vector_env


class Collector:
    """Owns the training environments. Each ``step`` adds one transition per environment slot.

    The buffer gets the true last observation of an episode as its next
    observation (Gymnasium's ``final_obs``), ``terminals`` only for real
    terminations and ``timeouts`` for time-limit truncations.
    """

    def __init__(self, env_id: str, num_envs: int, buffer: ReplayBuffer, *, seed: int) -> None:
        self.envs = make_vector_env(env_id, num_envs)
        self.num_envs = num_envs
        self.buffer = buffer
        self.reset(seed)

    def reset(self, seed: int) -> None:
        self.observations, _ = self.envs.reset(seed=[seed + i for i in range(self.num_envs)])
        self.envs.action_space.seed(seed)
        self.started = False
        self.running_return = np.zeros(self.num_envs)
        self.finished_returns: list[float] = []

    def step(self, policy: Callable[[Any], np.ndarray] | None) -> int:
        """One vector step; ``policy=None`` takes uniformly random actions. Returns transitions added."""
        if policy is None:
            actions = self.envs.action_space.sample()
        else:
            if not self.started and hasattr(policy, "start_episode"):
                policy.start_episode(None)
                self.started = True
            actions = policy(self.observations)
            space = self.envs.single_action_space
            if isinstance(space, gym.spaces.Box):
                actions = np.clip(actions, space.low, space.high)
        next_observations, rewards, terminated, truncated, infos = self.envs.step(actions)
        done = terminated | truncated
        if policy is not None and hasattr(policy, "observe"):
            policy.observe(rewards)
            if done.any():
                policy.start_episode(np.flatnonzero(done))
        final = _with_final_observations(next_observations, infos, done)
        self.buffer.add(
            observations=self.observations,
            actions=actions,
            rewards=rewards,
            next_observations=final,
            terminals=terminated,
            timeouts=truncated & ~terminated,
            env_ids=np.arange(self.num_envs),
        )
        self.running_return += rewards
        for index in np.flatnonzero(done):
            self.finished_returns.append(float(self.running_return[index]))
            self.running_return[index] = 0.0
        self.observations = next_observations
        return self.num_envs

    def pop_returns(self) -> list[float]:
        returns, self.finished_returns = self.finished_returns, []
        return returns

    def close(self) -> None:
        self.envs.close()


def _with_final_observations(next_observations: Any, infos: dict, done: np.ndarray) -> Any:
    if not done.any():
        return next_observations
    finals = infos["final_obs"]
    if isinstance(next_observations, dict):
        out = {key: value.copy() for key, value in next_observations.items()}
        for index in np.flatnonzero(done):
            for key in out:
                out[key][index] = finals[index][key]
        return out
    out = next_observations.copy()
    for index in np.flatnonzero(done):
        out[index] = finals[index]
    return out
