"""Fitted Q evaluation: estimates from data alone that rank policies as their true returns do."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from offrl.data import Dataset
from offrl.errors import OffrlError
from offrl.ope import fitted_q_evaluation
from offrl.zoo.pendulum import energy_pump
from tests.algos.test_images import image_dataset

GAMMA = 0.99


def pump(observations: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(energy_pump(observations.numpy()))


def still(observations: torch.Tensor) -> torch.Tensor:
    return torch.zeros(len(observations), 1)


def discounted_return(policy, observation: np.ndarray, horizon: int = 600) -> float:
    """The policy's discounted return from ``observation``, rolled out in Pendulum past its time limit."""
    env = gym.make("Pendulum-v1").unwrapped
    env.reset(seed=0)
    env.state = np.array([np.arctan2(observation[1], observation[0]), observation[2]])
    obs, total = np.asarray(observation, dtype=np.float32), 0.0
    for t in range(horizon):
        obs, reward, *_ = env.step(policy(torch.as_tensor(obs[None])).numpy()[0])
        total += GAMMA**t * reward
    return total


def test_fitted_q_evaluation_ranks_policies_and_estimates_the_good_one(pendulum_learning_dataset):
    data = pendulum_learning_dataset
    good = fitted_q_evaluation(pump, data, steps=5000, gamma=GAMMA)
    bad = fitted_q_evaluation(still, data, steps=5000, gamma=GAMMA)
    starts, _ = data.episode_bounds
    truth = np.mean([discounted_return(pump, data.observations[s]) for s in starts[:30]])
    # measured: the scripted controller -125 (true -130), a motionless pendulum -398 (true about -600)
    assert good.value > bad.value + 150, (good.value, bad.value)
    assert abs(good.value - truth) < 0.3 * abs(truth), (good.value, truth)
    assert good.initial_states == data.num_episodes


def test_fitted_q_evaluation_refuses_what_it_cannot_fit():
    with pytest.raises(OffrlError, match="vector observations"):
        fitted_q_evaluation(lambda o: torch.zeros(len(o), dtype=torch.long), image_dataset(), steps=10)
    with pytest.raises(OffrlError, match="steps >= 1"):
        fitted_q_evaluation(still, image_dataset(), steps=0)


def test_fitted_q_evaluation_of_dict_observations(pendulum_learning_dataset):
    data = pendulum_learning_dataset.subset(range(10))
    as_dict = Dataset(
        observations={"angle": data.observations[:, :2], "velocity": data.observations[:, 2:]},
        actions=data.actions, rewards=data.rewards,
        next_observations={"angle": data.next_observations[:, :2], "velocity": data.next_observations[:, 2:]},
        terminals=data.terminals, timeouts=data.timeouts, action_space=data.action_space,
    )

    def pump_dict(observations):
        return pump(torch.cat([torch.as_tensor(observations["angle"]), torch.as_tensor(observations["velocity"])], dim=1))

    flat = fitted_q_evaluation(pump, data, steps=300, gamma=GAMMA, seed=0)
    keyed = fitted_q_evaluation(pump_dict, as_dict, steps=300, gamma=GAMMA, seed=0)
    assert keyed.value == pytest.approx(flat.value, rel=1e-4)
