"""Decision Transformer's windows: inside one episode, left-padded, masked, returns-to-go right."""

from __future__ import annotations

import numpy as np
import torch

from offrl.data import Dataset
from offrl.data.sequences import SequenceSampler


def numbered_dataset() -> Dataset:
    """Three episodes of lengths 5 (terminal), 3 (timeout) and 4 (cut off by the end of the data).
    The observation of row i is i, its reward is 1."""
    n = 12
    terminals = np.zeros(n, bool)
    timeouts = np.zeros(n, bool)
    terminals[4] = True
    timeouts[7] = True
    rows = np.arange(n, dtype=np.float32)[:, None]
    return Dataset(
        observations=rows,
        actions=np.tanh(rows / 10),
        rewards=np.ones(n, np.float32),
        next_observations=rows + 1,
        terminals=terminals,
        timeouts=timeouts,
    )


def test_windows_stay_inside_one_episode_and_pad_on_the_left():
    ds = numbered_dataset()
    sampler = SequenceSampler(ds, length=4, batch_size=2000, seed=0)
    batch = sampler.sample()
    episode_of_row = np.repeat(np.arange(3), [5, 3, 4])
    observations = batch.observations[..., 0].numpy()
    mask = batch.mask.numpy()
    for window, valid in zip(observations, mask):
        real = window[valid].astype(int)
        assert len(set(episode_of_row[real])) == 1, window  # never crosses an episode boundary
        assert (np.diff(real) == 1).all()  # consecutive steps
        assert valid[-1] and (valid == np.sort(valid)).all()  # padding only on the left
        assert (window[~valid] == 0).all()
    # every row can start a window: each episode's last row appears as a one-step window
    lengths = mask.sum(1)
    assert set(lengths.tolist()) == {1, 2, 3, 4}


def test_timesteps_and_returns_to_go():
    ds = numbered_dataset()
    batch = SequenceSampler(ds, length=5, batch_size=3000, seed=1).sample()
    rows = batch.observations[..., 0].long()
    valid = batch.mask
    starts = torch.tensor([0, 0, 0, 0, 0, 5, 5, 5, 8, 8, 8, 8])
    stops = torch.tensor([5, 5, 5, 5, 5, 8, 8, 8, 12, 12, 12, 12])
    assert torch.equal(batch.timesteps[valid], (rows - starts[rows])[valid])
    # undiscounted sum of the episode's remaining rewards (all 1): at a timeout it is just the last reward
    assert torch.equal(batch.returns_to_go[valid], (stops[rows] - rows).float()[valid])
    assert torch.all(batch.returns_to_go[valid & (rows == 7)] == 1.0)
    assert torch.all(batch.returns_to_go[~valid] == 0) and torch.all(batch.actions[~valid] == 0)


def test_sampler_is_seeded_and_restorable():
    ds = numbered_dataset()
    a, b = SequenceSampler(ds, 3, 16, seed=4), SequenceSampler(ds, 3, 16, seed=4)
    assert torch.equal(a.sample().observations, b.sample().observations)
    state = a.get_state()
    first = a.sample().observations
    a.set_state(state)
    assert torch.equal(a.sample().observations, first)


def test_right_padded_windows_start_at_a_real_step_and_stop_at_the_episode_end():
    ds = numbered_dataset()
    batch = SequenceSampler(ds, length=4, batch_size=2000, pad="right", seed=2).sample()
    episode_of_row = np.repeat(np.arange(3), [5, 3, 4])
    stops = np.repeat([5, 8, 12], [5, 3, 4])
    observations, mask = batch.observations[..., 0].numpy(), batch.mask.numpy()
    for window, valid in zip(observations, mask):
        real = window[valid].astype(int)
        assert valid[0] and (valid == np.sort(valid)[::-1]).all()  # padding only on the right
        assert len(set(episode_of_row[real])) == 1 and (np.diff(real) == 1).all()
        assert len(real) == min(4, stops[real[0]] - real[0])  # as long as the episode allows
        assert (window[~valid] == 0).all()
    assert set(observations[:, 0].astype(int).tolist()) == set(range(12))  # every row starts windows


def test_future_observations_stay_in_the_episode():
    ds = numbered_dataset()  # next observation of row i is i + 1
    batch = SequenceSampler(ds, length=2, batch_size=500, pad="right", future=3, seed=3).sample()
    first = batch.observations[:, 0, 0].long()
    stops = torch.tensor([5, 5, 5, 5, 5, 8, 8, 8, 12, 12, 12, 12])
    assert torch.equal(batch.future_observations[:, 0].long(), torch.minimum(first + 3, stops[first]))
