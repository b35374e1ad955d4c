"""A ring buffer of transitions on the training device, sampled like a dataset."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from offrl.data.batch import Batch
from offrl.data.dataset import Dataset
from offrl.data.frames import stack_batch
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

    With ``frame_stack`` K > 1 the buffer still stores single frames and stacks at sampling time, as
    ``FrameStackSampler`` does for datasets: every ``add`` must then hold one transition per slot, in
    slot order, so a slot's previous frame is ``n`` rows back; each row records how many steps of its
    episode came before it, and stacks repeat the episode's first frame rather than cross into the
    previous episode. Rows whose K-1 predecessors have been overwritten are not sampled.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        capacity: int,
        *,
        device: torch.device | str = "cpu",
        seed: int = 0,
        frame_stack: int = 1,
        stack_keys: list[str] | None = None,
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
        self.frame_stack, self.stack_keys = int(frame_stack), stack_keys
        self.episode_steps = torch.zeros(self.capacity, dtype=torch.int64, device=self.device)  # steps of the episode before the row
        self.slot_steps = np.zeros(0, dtype=np.int64)  # per env slot: steps of its running episode so far
        self.stride = 0  # transitions per add (env slots), fixed when stacking frames
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
        slots = np.zeros(n, dtype=np.int64) if env_ids is None else np.asarray(env_ids, dtype=np.int64).reshape(n)
        write(self.env_ids, slots)
        write(self.order, np.arange(self.added, self.added + n))
        write(self.episode_steps, self._episode_steps(slots, terminals, timeouts))
        self.position = (self.position + n) % self.capacity
        self.size = min(self.size + n, self.capacity)
        self.added += n

    def _episode_steps(self, slots: np.ndarray, terminals: Any, timeouts: Any) -> np.ndarray:
        """Each incoming row's steps since its episode started; advances (or restarts) its slot's count."""
        if self.frame_stack > 1:
            if not np.array_equal(slots, np.arange(len(slots))) or (self.stride and len(slots) != self.stride):
                raise ValueError(
                    "a frame-stacking replay buffer needs one transition per environment slot per add, in slot order "
                    f"(the same {self.stride or len(slots)} slots every time); got env_ids {slots.tolist()}"
                )
            self.stride = len(slots)
        if len(self.slot_steps) <= slots.max(initial=0):
            self.slot_steps = np.concatenate([self.slot_steps, np.zeros(slots.max() + 1 - len(self.slot_steps), np.int64)])
        steps = self.slot_steps[slots].copy()
        ended = (np.asarray(terminals).reshape(-1) > 0.5) | (np.asarray(timeouts).reshape(-1) > 0.5)
        self.slot_steps[slots] = np.where(ended, 0, steps + 1)
        return steps

    def sample(self, batch_size: int, *, generator: torch.Generator | None = None) -> Batch:
        """``batch_size`` stored transitions drawn uniformly, with the buffer's generator or ``generator``."""
        if self.size == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        generator = generator or self.generator
        if self.frame_stack > 1:
            return self._sample_stacked(batch_size, generator)
        indices = torch.randint(self.size, (batch_size,), device=self.device, generator=generator)
        return self.storage.index(indices)

    def view(self, seed: int) -> "BufferView":
        """This buffer sampled with a generator of its own: learners sharing one buffer draw independently."""
        return BufferView(self, seed)

    def _sample_stacked(self, batch_size: int, generator: torch.Generator) -> Batch:
        frames, stride = self.frame_stack, self.stride
        if self.size < self.capacity:  # nothing overwritten yet
            rows = torch.randint(self.size, (batch_size,), device=self.device, generator=generator)
        else:  # skip the oldest rows, whose predecessors are gone
            skipped = (frames - 1) * stride
            if self.size <= skipped:
                raise RuntimeError(f"a replay buffer of {self.capacity} rows is too small to stack {frames} frames of {stride} slots")
            offsets = torch.randint(self.size - skipped, (batch_size,), device=self.device, generator=generator)
            rows = (self.position + skipped + offsets) % self.capacity
        batch = self.storage.index(rows)
        back = torch.arange(frames - 1, -1, -1, device=self.device)  # [K]: K-1 .. 0 steps back
        back = torch.minimum(back, self.episode_steps[rows][:, None])  # not before the episode's first frame
        stack_rows = (rows[:, None] - back * stride) % self.capacity
        return stack_batch(batch, self.storage.observations, stack_rows, self.stack_keys)

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
        tensors["episode_steps"] = self.episode_steps[: self.size]
        tensors["slot_steps"] = torch.as_tensor(self.slot_steps)
        tensors["counters"] = torch.tensor([self.position, self.size, self.added, self.stride])
        tensors["generator"] = self.generator.get_state()
        return tensors

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        """A saved buffer's rows, into a buffer of the same capacity or a larger one (a search resumed with
        more steps): there the rows are laid out oldest first and the next write goes after the newest."""
        counters = [int(v) for v in tensors["counters"]]
        position, size, self.added = counters[:3]
        if size > self.capacity:
            raise ValueError(f"a saved replay buffer of {size} rows does not fit in {self.capacity}")
        shift = 0
        if size < self.capacity:  # the saved ring's oldest row is at its position once it has wrapped
            shift, position = (position if position < size else 0), size
        self.position, self.size = position, size
        self.stride = counters[3] if len(counters) > 3 else 0  # buffers saved before frame stacking have 3

        def put(target: torch.Tensor, saved: torch.Tensor) -> None:
            target[:size].copy_(saved.roll(-shift, dims=0) if shift else saved)

        for name in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts"):
            for key, value in tree_items(getattr(self.storage, name), name):
                put(value, tensors[key])
        put(self.env_ids, tensors["env_ids"])
        put(self.order, tensors["order"])
        if "episode_steps" in tensors:
            put(self.episode_steps, tensors["episode_steps"])
            self.slot_steps = tensors["slot_steps"].numpy().astype(np.int64)
        self.generator.set_state(tensors["generator"])


class BufferView:
    """A shared :class:`ReplayBuffer` as one learner samples it: the same rows, its own random generator."""

    def __init__(self, buffer: ReplayBuffer, seed: int) -> None:
        self.buffer = buffer
        self.generator = torch.Generator(device=buffer.device)
        self.generator.manual_seed(seed)

    def __len__(self) -> int:
        return len(self.buffer)

    def sample(self, batch_size: int) -> Batch:
        return self.buffer.sample(batch_size, generator=self.generator)
