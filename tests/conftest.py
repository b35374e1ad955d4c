"""Shared fixtures: small datasets built from real environment rollouts (no downloads)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from offrl.data import Dataset
from offrl.data.collect import collect
from offrl.zoo.pendulum import energy_pump

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def pendulum_dataset() -> Dataset:
    """30 episodes (6,000 transitions) of the noisy scripted Pendulum controller."""
    return collect("Pendulum-v1", energy_pump, episodes=30, num_envs=10, seed=0, noise=0.8, epsilon=0.2)


@pytest.fixture(scope="session")
def pendulum_learning_dataset() -> Dataset:
    """100 noisy scripted episodes: behaviour return about -490, the clean controller about -145."""
    return collect("Pendulum-v1", energy_pump, episodes=100, num_envs=10, seed=1, noise=0.8, epsilon=0.2)


def random_dataset(
    n: int = 500,
    obs_dim: int = 4,
    action_dim: int = 2,
    *,
    episode_length: int = 50,
    seed: int = 0,
    low: float = -1.0,
    high: float = 1.0,
    dict_observations: bool = False,
) -> Dataset:
    rng = np.random.default_rng(seed)
    observations = rng.normal(size=(n, obs_dim)).astype(np.float32)
    next_observations = rng.normal(size=(n, obs_dim)).astype(np.float32)
    if dict_observations:
        observations = {"position": observations, "velocity": observations[:, :2] * 2}
        next_observations = {"position": next_observations, "velocity": next_observations[:, :2] * 2}
        observation_space = gym.spaces.Dict(
            {
                "position": gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
                "velocity": gym.spaces.Box(-np.inf, np.inf, (2,), np.float32),
            }
        )
    else:
        observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
    timeouts = (np.arange(n) % episode_length) == episode_length - 1
    return Dataset(
        observations=observations,
        actions=rng.uniform(low, high, size=(n, action_dim)).astype(np.float32),
        rewards=rng.normal(size=n).astype(np.float32),
        next_observations=next_observations,
        terminals=np.zeros(n, dtype=bool),
        timeouts=timeouts,
        observation_space=observation_space,
        action_space=gym.spaces.Box(low, high, (action_dim,), np.float32),
    )


@pytest.fixture(scope="session")
def cartpole_dataset() -> Dataset:
    """80 episodes of the scripted CartPole controller with every other action random: return about 170."""
    from offrl.zoo.cartpole import balance

    return collect("CartPole-v1", balance, episodes=80, num_envs=8, seed=0, epsilon=0.5)
