from __future__ import annotations

import numpy as np
import pytest
import torch

from offrl.data import Dataset
from tests.conftest import random_dataset


def test_episode_boundaries_from_terminals_timeouts_and_the_end():
    terminals = np.zeros(10, bool)
    timeouts = np.zeros(10, bool)
    terminals[2] = True
    timeouts[6] = True  # rows 7..9 form an unfinished last episode
    ds = Dataset(
        observations=np.arange(10, dtype=np.float32)[:, None],
        actions=np.zeros((10, 1), np.float32),
        rewards=np.arange(10, dtype=np.float32),
        next_observations=np.arange(1, 11, dtype=np.float32)[:, None],
        terminals=terminals,
        timeouts=timeouts,
    )
    starts, stops = ds.episode_bounds
    assert starts.tolist() == [0, 3, 7]
    assert stops.tolist() == [3, 7, 10]
    assert ds.episode_lengths().tolist() == [3, 4, 3]
    assert ds.episode_returns().tolist() == [0 + 1 + 2, 3 + 4 + 5 + 6, 7 + 8 + 9]
    episodes = list(ds.episodes())
    assert [e.terminated for e in episodes] == [True, False, False]
    assert [e.truncated for e in episodes] == [False, True, False]
    assert episodes[1].observations[:, 0].tolist() == [3, 4, 5, 6]


def test_dtypes_are_normalized_once():
    ds = Dataset(
        observations=np.ones((4, 3), np.float64),
        actions=np.zeros(4, np.float64),  # one-dimensional actions become (N, 1)
        rewards=np.ones((4, 1), np.float64),
        next_observations=np.ones((4, 3), np.float64),
        terminals=np.array([0, 0, 0, 1]),
        timeouts=np.zeros(4, np.float32),
    )
    assert ds.observations.dtype == np.float32
    assert ds.actions.shape == (4, 1) and ds.actions.dtype == np.float32
    assert ds.rewards.shape == (4,) and ds.rewards.dtype == np.float32
    assert ds.terminals.dtype == np.bool_ and ds.terminals.tolist() == [False, False, False, True]
    assert ds.action_space.low.tolist() == [-1.0]  # inferred: the data fits in [-1, 1]


def test_inferred_action_space_covers_wider_data():
    ds = random_dataset(low=-2.0, high=2.0)
    ds2 = Dataset(
        observations=ds.observations,
        actions=ds.actions,
        rewards=ds.rewards,
        next_observations=ds.next_observations,
        terminals=ds.terminals,
        timeouts=ds.timeouts,
    )
    assert np.all(ds2.action_space.low <= ds.actions.min(0)) and np.all(ds2.action_space.high >= ds.actions.max(0))
    assert ds2.action_space.high.max() > 1.0


def test_observation_stats_and_dict_observations():
    ds = random_dataset(dict_observations=True)
    mean, std = ds.observation_stats(eps=1e-3)
    assert set(mean) == {"position", "velocity"}
    np.testing.assert_allclose(mean["velocity"], ds.observations["velocity"].mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std["position"], ds.observations["position"].std(0) + 1e-3, rtol=1e-5)
    batch = ds.to("cpu")
    assert batch.observations["velocity"].shape == (len(ds), 2)


def test_split_and_subset_keep_whole_episodes():
    ds = random_dataset(n=500, episode_length=50)
    train, val = ds.split(0.8, seed=3)
    assert train.num_episodes == 8 and val.num_episodes == 2
    assert len(train) + len(val) == len(ds)
    assert set(train.episode_lengths()) == {50}
    again_train, _ = ds.split(0.8, seed=3)
    np.testing.assert_array_equal(again_train.rewards, train.rewards)
    first = ds.subset([0])
    np.testing.assert_array_equal(first.rewards, ds.rewards[:50])
    reordered = ds.subset([2, 0])
    np.testing.assert_array_equal(reordered.rewards[:50], ds.rewards[100:150])


def test_to_device_tensors():
    ds = random_dataset()
    batch = ds.to("cpu")
    assert batch.observations.dtype == torch.float32
    assert batch.terminals.dtype == torch.float32
    assert batch.timeouts.sum().item() == ds.timeouts.sum()
    np.testing.assert_array_equal(batch.actions.numpy(), ds.actions)


def test_summary_and_fingerprint(pendulum_dataset):
    summary = pendulum_dataset.summary()
    assert summary["transitions"] == 6000 and summary["episodes"] == 30
    assert summary["timeouts"] == 30 and summary["terminals"] == 0
    assert summary["return"]["mean"] == pytest.approx(pendulum_dataset.episode_returns().mean())
    assert pendulum_dataset.fingerprint() == pendulum_dataset.take(slice(None)).fingerprint()
    assert pendulum_dataset.fingerprint() != pendulum_dataset.subset(range(29)).fingerprint()
