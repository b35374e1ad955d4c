"""Goal-conditioned observations: goals are observation keys like any other (``goal_<key>``).

robomimic's ``goal_mode="last"``: each transition of a demonstration is
conditioned on where the demonstration ended, the final observation of its
episode (the ``next_observations`` of its last row). ``with_goals`` adds those
keys to a dataset, so every algorithm and encoder takes goals without knowing
it; in an environment ``GoalObservation`` adds the same keys from a goal that
is given, or that the task reports through ``goal_observation()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from offrl.data.dataset import Dataset
from offrl.errors import DatasetError, OffrlError

PREFIX = "goal_"


def with_goals(dataset: Dataset, keys: Sequence[str]) -> Dataset:
    """``dataset`` with ``goal_<key>`` observations: for every row, ``key`` at the end of its episode."""
    if not isinstance(dataset.observations, dict):
        raise DatasetError(dataset.source, "goal conditioning needs dict observations (named keys to take goals from)")
    missing = [key for key in keys if key not in dataset.observations]
    if missing or not keys:
        known = ", ".join(sorted(dataset.observations))
        raise DatasetError(dataset.source, f"no observation key {', '.join(map(repr, missing)) or '(none given)'} to take goals from (keys: {known})")
    starts, stops = dataset.episode_bounds
    last_row = np.repeat(stops - 1, stops - starts)  # every row's episode's last row
    goals = {PREFIX + key: np.asarray(dataset.next_observations[key])[last_row] for key in keys}
    spaces = dict(dataset.observation_space.spaces)
    spaces.update({PREFIX + key: spaces[key] for key in keys})
    return Dataset(
        observations={**dataset.observations, **goals},
        actions=dataset.actions,
        rewards=dataset.rewards,
        next_observations={**dataset.next_observations, **goals},
        terminals=dataset.terminals,
        timeouts=dataset.timeouts,
        observation_space=gym.spaces.Dict(spaces),
        action_space=dataset.action_space,
        infos=dataset.infos,
        metadata={**dataset.metadata, "goal_keys": list(keys)},
        source=dataset.source,
    )


class GoalObservation(gym.ObservationWrapper):
    """Adds ``goal_<key>`` for each key to a dict-observation environment: from ``goal`` when given, else from
    the task's ``goal_observation()`` (read at every step: a task may draw its goal at reset)."""

    def __init__(self, env: gym.Env, keys: Sequence[str], goal: dict[str, Any] | None = None) -> None:
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, gym.spaces.Dict) or any(key not in space.spaces for key in keys):
            raise OffrlError(f"{env.spec.id if env.spec else env}: goal keys {list(keys)} are not keys of its observations {space}")
        if goal is None and not callable(getattr(env.unwrapped, "goal_observation", None)):
            raise OffrlError(f"{env.spec.id if env.spec else env} reports no goal (goal_observation()): give the goal explicitly")
        self.keys, self.goal = list(keys), goal
        self.observation_space = gym.spaces.Dict({**space.spaces, **{PREFIX + key: space.spaces[key] for key in keys}})

    def observation(self, observation: dict[str, Any]) -> dict[str, Any]:
        goal = self.goal if self.goal is not None else self.env.unwrapped.goal_observation()
        return {**observation, **{PREFIX + key: np.asarray(goal[key], dtype=self.observation_space[PREFIX + key].dtype) for key in self.keys}}
