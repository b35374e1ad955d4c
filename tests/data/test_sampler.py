from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from offrl.data import ReplayBuffer, UniformSampler
from tests.conftest import random_dataset


def _row_index(batch_obs: torch.Tensor, all_obs: np.ndarray) -> np.ndarray:
    """Recover the dataset row of each sampled observation (rows are distinct random vectors)."""
    distances = ((batch_obs.numpy()[:, None, :] - all_obs[None, :, :]) ** 2).sum(-1)
    return distances.argmin(1)


def test_packed_sampler_returns_whole_rows():
    ds = random_dataset(n=300)
    sampler = UniformSampler(ds.to("cpu"), 64, seed=0)
    assert sampler._packed is not None
    batch = sampler.sample()
    rows = _row_index(batch.observations, ds.observations)
    np.testing.assert_array_equal(batch.actions.numpy(), ds.actions[rows])
    np.testing.assert_array_equal(batch.rewards.numpy(), ds.rewards[rows])
    np.testing.assert_array_equal(batch.next_observations.numpy(), ds.next_observations[rows])
    np.testing.assert_array_equal(batch.timeouts.numpy(), ds.timeouts[rows].astype(np.float32))
    assert batch.rewards.shape == (64,) and batch.terminals.shape == (64,)


def test_sampler_is_deterministic_and_restorable():
    data = random_dataset(n=300).to("cpu")
    a, b = UniformSampler(data, 32, seed=5), UniformSampler(data, 32, seed=5)
    for _ in range(3):
        torch.testing.assert_close(a.sample().observations, b.sample().observations)
    state = a.get_state()
    expected = a.sample().rewards
    a.set_state(state)
    torch.testing.assert_close(a.sample().rewards, expected)


def test_sampler_with_dict_observations_is_not_packed():
    ds = random_dataset(n=200, dict_observations=True)
    sampler = UniformSampler(ds.to("cpu"), 16, seed=0)
    assert sampler._packed is None
    batch = sampler.sample()
    rows = _row_index(batch.observations["position"], ds.observations["position"])
    np.testing.assert_array_equal(batch.observations["velocity"].numpy(), ds.observations["velocity"][rows])


def test_sampler_covers_the_dataset_uniformly():
    ds = random_dataset(n=10)
    sampler = UniformSampler(ds.to("cpu"), 10_000, seed=0)
    counts = np.bincount(_row_index(sampler.sample().observations, ds.observations), minlength=10)
    assert counts.min() > 850 and counts.max() < 1150


def _buffer(capacity: int) -> ReplayBuffer:
    return ReplayBuffer(
        gym.spaces.Box(-np.inf, np.inf, (2,), np.float32), gym.spaces.Box(-1, 1, (1,), np.float32), capacity
    )


def test_replay_buffer_wraps_around_and_samples():
    buffer = _buffer(5)
    for t in range(7):
        buffer.add(
            observations=np.full((1, 2), t, np.float32),
            actions=np.zeros((1, 1)),
            rewards=[float(t)],
            next_observations=np.full((1, 2), t + 1, np.float32),
            terminals=[0.0],
            timeouts=[0.0],
        )
    assert len(buffer) == 5
    assert sorted(buffer.storage.rewards.tolist()) == [2.0, 3.0, 4.0, 5.0, 6.0]
    batch = buffer.sample(100)
    assert set(batch.rewards.tolist()) <= {2.0, 3.0, 4.0, 5.0, 6.0}
    torch.testing.assert_close(batch.next_observations[:, 0], batch.observations[:, 0] + 1)


def test_replay_buffer_to_dataset_keeps_each_env_stream_contiguous():
    buffer = _buffer(100)
    for t in range(6):  # two vector-env slots, interleaved; slot 1 ends an episode at t=2
        buffer.add(
            observations=np.array([[t, 0], [t, 1]], np.float32),
            actions=np.zeros((2, 1)),
            rewards=[t, 10 + t],
            next_observations=np.array([[t + 1, 0], [t + 1, 1]], np.float32),
            terminals=[0.0, 1.0 if t == 2 else 0.0],
            timeouts=[0.0, 0.0],
            env_ids=[0, 1],
        )
    ds = buffer.to_dataset()
    assert ds.rewards.tolist() == [0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15]
    assert ds.episode_lengths().tolist() == [6, 3, 3]
    assert ds.terminals.tolist()[8] and ds.timeouts[5] and ds.timeouts[11]


def test_replay_buffer_state_round_trip():
    buffer = _buffer(8)
    buffer.add(observations=np.ones((3, 2)), actions=np.zeros((3, 1)), rewards=[1, 2, 3],
               next_observations=np.ones((3, 2)), terminals=[0, 0, 1], timeouts=[0, 0, 0])
    restored = _buffer(8)
    restored.load_state_dict(buffer.state_dict())
    assert len(restored) == 3 and restored.position == 3
    torch.testing.assert_close(restored.sample(4).rewards, buffer.sample(4).rewards)
