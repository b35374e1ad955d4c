"""Frame stacking at sampling time never crosses an episode start, and rollouts stack the same way."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from offrl.data import Dataset
from offrl.data.frames import FrameStackSampler, episode_row_starts
from offrl.data.replay import ReplayBuffer
from offrl.rollout import FrameStackRollout, RolloutPolicy


def numbered_frames_dataset() -> Dataset:
    """Episodes of lengths 2, 5 and 7; every frame holds (10 * episode + step), its next frame step + 1."""
    lengths = [2, 5, 7]
    ids = np.concatenate([10 * (e + 1) + np.arange(length) for e, length in enumerate(lengths)]).astype(np.uint8)
    frames = np.broadcast_to(ids[:, None, None], (len(ids), 3, 3)).copy()
    ends = np.cumsum(lengths) - 1
    terminals = np.zeros(len(ids), dtype=bool)
    terminals[ends] = True
    return Dataset(
        observations=frames,
        actions=np.zeros(len(ids), dtype=np.int64),
        rewards=np.zeros(len(ids), dtype=np.float32),
        next_observations=frames + 1,
        terminals=terminals,
        timeouts=np.zeros(len(ids), dtype=bool),
        observation_space=gym.spaces.Box(0, 255, (3, 3), np.uint8),
        action_space=gym.spaces.Discrete(2),
    )


def test_stacks_repeat_the_first_frame_at_episode_starts_and_end_in_the_next_frame():
    ds = numbered_frames_dataset()
    sampler = FrameStackSampler(ds.to("cpu"), episode_row_starts(*ds.episode_bounds), 4, 512, seed=0)
    batch = sampler.sample()
    assert batch.observations.shape == (512, 4, 3, 3) and batch.next_observations.shape == (512, 4, 3, 3)
    stacks = batch.observations[:, :, 0, 0].long()
    following = batch.next_observations[:, :, 0, 0].long()
    seen = set()
    for stack, after in zip(stacks.tolist(), following.tolist()):
        episode, last = divmod(stack[-1], 10)
        expected = [10 * episode + max(last - k, 0) for k in (3, 2, 1, 0)]
        assert stack == expected  # never a frame of another episode
        assert after == expected[1:] + [stack[-1] + 1]
        seen.add(stack[-1])
    assert len(seen) == len(ds)  # every row was drawn


def test_rollout_stacks_as_the_sampler_does():
    class Recorder(RolloutPolicy):
        def __call__(self, observations):
            self.last = observations.copy()
            return np.zeros(len(observations), dtype=np.int64)

    inner = Recorder()
    rollout = FrameStackRollout(inner, 3, num_envs=2)
    rollout.start_episode(None)
    frame = lambda a, b: np.array([np.full((3, 3), a), np.full((3, 3), b)], dtype=np.uint8)  # noqa: E731
    rollout(frame(100, 200))
    assert inner.last[:, :, 0, 0].tolist() == [[100, 100, 100], [200, 200, 200]]
    rollout(frame(101, 201))
    rollout.start_episode(np.array([1]))  # slot 1's episode ended: its next frame starts a new one
    rollout(frame(102, 250))
    assert inner.last[:, :, 0, 0].tolist() == [[100, 101, 102], [250, 250, 250]]
    torch.testing.assert_close(torch.as_tensor(inner.last[0, -1]), torch.full((3, 3), 102, dtype=torch.uint8))


def test_replay_buffer_stacks_per_slot_within_episodes_and_skips_overwritten_history():
    """Two env slots add a frame each per step (value 100 * slot + 10 * episode + step); episodes of random lengths
    end by termination or truncation; the ring wraps several times. Every sampled stack is the slot's own last
    frames of the same episode, the first frame repeated before its start, and the next stack ends in the next frame."""
    slots, frames, capacity = 2, 3, 40
    buffer = ReplayBuffer(gym.spaces.Box(0, 255, (2, 2), np.uint8), gym.spaces.Discrete(2), capacity, frame_stack=frames)
    rng = np.random.default_rng(0)
    episode, step, length = np.zeros(slots, int), np.zeros(slots, int), rng.integers(1, 6, slots)
    for _ in range(90):
        values = 100 * np.arange(slots) + 10 * (episode % 10) + step
        image = lambda v: np.broadcast_to(np.asarray(v, np.uint8)[:, None, None], (slots, 2, 2)).copy()  # noqa: E731
        ended = step + 1 >= length
        truncated = ended & (rng.random(slots) < 0.5)
        buffer.add(observations=image(values), actions=np.zeros(slots, np.int64), rewards=np.zeros(slots),
                   next_observations=image(values + 1), terminals=ended & ~truncated, timeouts=truncated,
                   env_ids=np.arange(slots))
        step = np.where(ended, 0, step + 1)
        episode = np.where(ended, episode + 1, episode)
        length = np.where(ended, rng.integers(1, 6, slots), length)
    assert buffer.size == capacity
    batch = buffer.sample(2000)
    assert batch.observations.shape == (2000, frames, 2, 2)
    stacks, following = batch.observations[:, :, 0, 0].long().tolist(), batch.next_observations[:, :, 0, 0].long().tolist()
    drawn = set()
    for stack, after in zip(stacks, following):
        base, last = stack[-1] - stack[-1] % 10, stack[-1] % 10
        assert stack == [base + max(last - k, 0) for k in range(frames - 1, -1, -1)]
        assert after == stack[1:] + [stack[-1] + 1]
        drawn.add(stack[-1])
    assert len(drawn) > 20


def test_replay_buffer_refuses_ragged_adds_when_stacking():
    buffer = ReplayBuffer(gym.spaces.Box(0, 255, (2, 2), np.uint8), gym.spaces.Discrete(2), 10, frame_stack=2)
    row = {"actions": np.zeros(1, np.int64), "rewards": np.zeros(1), "terminals": np.zeros(1), "timeouts": np.zeros(1)}
    frame = np.zeros((1, 2, 2), np.uint8)
    with pytest.raises(ValueError, match=r"one transition per environment slot per add, in slot order .* got env_ids \[3\]"):
        buffer.add(observations=frame, next_observations=frame, env_ids=np.array([3]), **row)
