"""Goals as observation keys: the end of each demonstration in the data, the task's goal in the environment."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from offrl.data.collect import collect
from offrl.data.goals import GoalObservation, with_goals
from offrl.errors import DatasetError, OffrlError
from offrl.train.evaluate import make_env, make_vector_env
from offrl.zoo.tasks import demonstrator
from tests.conftest import random_dataset

TASK = "offrl/CueMemory-v0"


def test_every_row_is_conditioned_on_the_end_of_its_episode():
    data = collect(TASK, demonstrator(TASK, 4, seed=0), episodes=8, num_envs=4, seed=0)
    goals = with_goals(data, ["position"])
    assert set(goals.observations) == {"position", "cue", "goal_position"}
    assert goals.observation_space["goal_position"] == data.observation_space["position"]
    for episode in goals.episodes():
        final = episode.next_observations["position"][-1]
        assert np.array_equal(episode.observations["goal_position"], np.repeat(final[None], len(episode), 0))
        assert np.array_equal(episode.next_observations["goal_position"], episode.observations["goal_position"])
        cued = [-1.0, 1.0][int(final[0] > 0)]
        assert episode.observations["cue"][0, 0] == cued  # the end says which goal was cued
    assert goals.metadata["goal_keys"] == ["position"] and len(goals) == len(data)


def test_goal_errors_name_the_problem():
    data = collect(TASK, demonstrator(TASK, 2, seed=0), episodes=2, num_envs=2, seed=0)
    with pytest.raises(DatasetError, match="no observation key 'velocity' to take goals from"):
        with_goals(data, ["velocity"])
    with pytest.raises(DatasetError, match="needs dict observations"):
        with_goals(random_dataset(n=20), ["x"])
    with pytest.raises(OffrlError, match="not keys of its observations"):
        GoalObservation(make_env("Pendulum-v1"), ["position"])
    with pytest.raises(OffrlError, match="reports no goal"):
        GoalObservation(DictPoint(), ["position"])


class DictPoint(gym.Env):
    observation_space = gym.spaces.Dict({"position": gym.spaces.Box(-1, 1, (2,))})
    action_space = gym.spaces.Box(-1, 1, (2,))


def test_environments_add_the_tasks_goal():
    envs = make_vector_env(TASK, 3, goal_keys=["position"])
    observations, _ = envs.reset(seed=[0, 1, 2])
    for _ in range(3):
        observations, *_ = envs.step(np.zeros((3, 2), np.float32))  # the cue is gone, the goal stays
    targets = [env.unwrapped.target for env in envs.envs]
    assert np.allclose(observations["goal_position"], [[[-1.0, 1.0], [1.0, 1.0]][t] for t in targets])
    assert (observations["cue"] == 0).all()
    fixed = GoalObservation(make_env(TASK), ["position"], goal={"position": [0.5, 0.5]})
    assert np.allclose(fixed.reset(seed=0)[0]["goal_position"], [0.5, 0.5])
