"""A ring buffer of transitions on the training device, sampled like a dataset."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from offrl.data.batch import Batch
from offrl.data.dataset import Dataset
from offrl.data.tree import tree_items, tree_map, tree_map2


def _allocate(space: gym.Space, capacity: int, device: torch.device) -> torch.Tensor | dict[str, torch.Tensor]:
    if isinstance(space, gym.spaces.Dict):
        return {key: _allocate(sub, capacity, device) for key, sub in space.spaces.items()}
    if isinstance(space, gym.spaces.Discrete):
        return torch.zeros(capacity, dtype=torch.int64, device=device)
    dtype = torch.uint8 if space.dtype == np.uint8 else torch.float32
    return torch.zeros((capacity, *space.shape), dtype=dtype, device=device)


class ReplayBuffer:
    """Fixed capacity; the oldest transitions are overwritten first.

    ``add`` takes a batch of ``n`` transitions (one per vector-env slot);
    ``env_ids`` records which slot each came from, so the buffer can be
    written back out as a dataset with every episode contiguous.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        capacity: int,
        *,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ) -> None:
        self.observation_space = observation_space
        self.action_space = action_space
        self.capacity = int(capacity)
        self.device = torch.device(device)
        self.storage = Batch(
            observations=_allocate(observation_space, self.capacity, self.device),
            actions=_allocate(action_space, self.capacity, self.device),
            rewards=torch.zeros(self.capacity, device=self.device),
            next_observations=_allocate(observation_space, self.capacity, self.device),
            terminals=torch.zeros(self.capacity, device=self.device),
            timeouts=torch.zeros(self.capacity, device=self.device),
        )
        self.env_ids = torch.zeros(self.capacity, dtype=torch.int64, device=self.device)
        self.order = torch.zeros(self.capacity, dtype=torch.int64, device=self.device)
        self.position = 0
        self.size = 0
        self.added = 0
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    def __len__(self) -> int:
        return self.size

    def add(
        self,
        *,
        observations: Any,
        actions: Any,
        rewards: Any,
        next_observations: Any,
        terminals: Any,
        timeouts: Any,
        env_ids: Any = None,
    ) -> None:
        n = len(np.asarray(rewards).reshape(-1))
        rows = (self.position + torch.arange(n, device=self.device)) % self.capacity
        incoming = Batch(
            observations=observations,
            actions=actions,
            rewards=rewards,
            next_observations=next_observations,
            terminals=terminals,
            timeouts=timeouts,
        )

        def write(target: torch.Tensor, value: Any) -> None:
            value = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
            target.index_copy_(0, rows, value.to(device=self.device, dtype=target.dtype).reshape(n, *target.shape[1:]))

        for name in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts"):
            tree_map2(write, getattr(self.storage, name), getattr(incoming, name))
        write(self.env_ids, np.zeros(n, dtype=np.int64) if env_ids is None else env_ids)
        write(self.order, np.arange(self.added, self.added + n))
        self.position = (self.position + n) % self.capacity
        self.size = min(self.size + n, self.capacity)
        self.added += n

    def sample(self, batch_size: int) -> Batch:
        if self.size == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        indices = torch.randint(self.size, (batch_size,), device=self.device, generator=self.generator)
        return self.storage.index(indices)

    def to_dataset(self, *, source: str = "<replay buffer>") -> Dataset:
        """The stored transitions as a Dataset, each env slot's stream contiguous and in time order.

        The last stored transition of a stream that did not end its episode is
        marked as a timeout: the recording cut the episode off there.
        """
        if self.size == 0:
            raise RuntimeError("the replay buffer is empty")
        env_ids = self.env_ids[: self.size].cpu().numpy()
        order = self.order[: self.size].cpu().numpy()
        rows = np.lexsort((order, env_ids))

        def column(tensor: torch.Tensor) -> np.ndarray:
            return tensor[: self.size].cpu().numpy()[rows]

        terminals = column(self.storage.terminals) > 0.5
        timeouts = column(self.storage.timeouts) > 0.5
        sorted_env_ids = env_ids[rows]
        stream_ends = np.flatnonzero(np.append(sorted_env_ids[1:] != sorted_env_ids[:-1], True))
        timeouts[stream_ends] |= ~terminals[stream_ends]
        return Dataset(
            observations=tree_map(column, self.storage.observations),
            actions=column(self.storage.actions),
            rewards=column(self.storage.rewards),
            next_observations=tree_map(column, self.storage.next_observations),
            terminals=terminals,
            timeouts=timeouts,
            observation_space=self.observation_space,
            action_space=self.action_space,
            source=source,
        )

    def state_dict(self) -> dict[str, torch.Tensor]:
        tensors = {}
        for name in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts"):
            for key, value in tree_items(getattr(self.storage, name), name):
                tensors[key] = value[: self.size]
        tensors["env_ids"] = self.env_ids[: self.size]
        tensors["order"] = self.order[: self.size]
        tensors["counters"] = torch.tensor([self.position, self.size, self.added])
        tensors["generator"] = self.generator.get_state()
        return tensors

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        self.position, self.size, self.added = (int(v) for v in tensors["counters"])
        for name in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts"):
            for key, value in tree_items(getattr(self.storage, name), name):
                value[: self.size].copy_(tensors[key])
        self.env_ids[: self.size].copy_(tensors["env_ids"])
        self.order[: self.size].copy_(tensors["order"])
        self.generator.set_state(tensors["generator"])
