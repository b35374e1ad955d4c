"""Columnar transitions with episode boundaries, validated once when built.

Row ``i`` is one transition: ``observations[i]``, ``actions[i]``,
``rewards[i]``, ``next_observations[i]``, ``terminals[i]``, ``timeouts[i]``.
Episodes are contiguous runs of rows; an episode ends at a row whose
terminal or timeout flag is set, or at the last row.

A terminal means the episode reached a terminal state (no bootstrapping from
``next_observations``); a timeout means it was cut off by a time limit: its
``next_observations`` row is a real observation and value targets bootstrap
through it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Sequence
from functools import cached_property
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from offrl.data import validation
from offrl.data.batch import Batch
from offrl.data.memmap import as_tensor, mean_std
from offrl.data.tree import tree_items, tree_map
from offrl.errors import DatasetError
from offrl.spaces import as_float32

Observations = np.ndarray | dict[str, np.ndarray]


@dataclasses.dataclass(eq=False)
class Episode:
    """A view of one episode's rows."""

    index: int
    start: int
    stop: int
    observations: Observations
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: Observations
    terminated: bool
    truncated: bool

    def __len__(self) -> int:
        return self.stop - self.start

    @property
    def total_return(self) -> float:
        return float(self.rewards.sum(dtype=np.float64))


@dataclasses.dataclass(eq=False)
class Dataset:
    """Transitions in columns. Constructing one validates it; see ``offrl.data.validation``."""

    observations: Observations
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: Observations
    terminals: np.ndarray
    timeouts: np.ndarray
    observation_space: gym.Space | None = None
    action_space: gym.Space | None = None
    infos: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    source: str = "<memory>"

    def __post_init__(self) -> None:
        src = self.source
        infos = {f"infos/{key}": value for key, value in self.infos.items()}
        validation.check_lengths(src, {**self._columns(), **infos})
        for name in ("observations", "next_observations"):
            for key, array in tree_items(getattr(self, name), name):
                validation.check_numeric(src, key, array)
                validation.check_finite(src, key, array)
        self.observations = tree_map(_observation_dtype, self.observations)
        self.next_observations = tree_map(_observation_dtype, self.next_observations)

        validation.check_numeric(src, "actions", self.actions)
        validation.check_finite(src, "actions", self.actions)
        if self.actions.dtype.kind == "f":
            self.actions = self.actions.astype(np.float32, copy=False)
            if self.actions.ndim == 1:
                self.actions = self.actions[:, None]
        elif self.actions.ndim == 2 and self.actions.shape[1] == 1:
            self.actions = self.actions[:, 0]

        validation.check_numeric(src, "rewards", self.rewards)
        validation.check_finite(src, "rewards", self.rewards)
        if self.rewards.ndim == 2 and self.rewards.shape[1] == 1:
            self.rewards = self.rewards[:, 0]
        if self.rewards.ndim != 1:
            raise DatasetError(src, f"expected shape (N,), found {self.rewards.shape}", key="rewards")
        self.rewards = self.rewards.astype(np.float32, copy=False)

        self.terminals = validation.as_flags(src, "terminals", self.terminals)
        self.timeouts = validation.as_flags(src, "timeouts", self.timeouts)
        validation.check_flags_exclusive(src, self.terminals, self.timeouts)

        if self.observation_space is None:
            self.observation_space = infer_observation_space(self.observations)
        self.observation_space = as_float32(self.observation_space)
        if self.action_space is None:
            self.action_space = infer_action_space(self.actions)
        validation.check_observations(src, "observations", self.observations, self.observation_space)
        validation.check_observations(src, "next_observations", self.next_observations, self.observation_space)
        validation.check_actions(src, self.actions, self.action_space)

    # ------------------------------------------------------------------ shape

    def __len__(self) -> int:
        return len(self.rewards)

    @cached_property
    def episode_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(starts, stops): row ranges ``[starts[k], stops[k])`` of every episode."""
        ends = np.flatnonzero(self.terminals | self.timeouts)
        if len(ends) == 0 or ends[-1] != len(self) - 1:
            ends = np.append(ends, len(self) - 1)
        stops = ends + 1
        starts = np.concatenate([[0], stops[:-1]])
        return starts, stops

    @property
    def num_episodes(self) -> int:
        return len(self.episode_bounds[0])

    def episode_lengths(self) -> np.ndarray:
        starts, stops = self.episode_bounds
        return stops - starts

    def episode_returns(self) -> np.ndarray:
        starts, _ = self.episode_bounds
        return np.add.reduceat(self.rewards.astype(np.float64), starts)

    def returns_to_go(self, discount: float = 1.0) -> np.ndarray:
        """Per row, the (discounted) sum of this and the following rewards of its episode, float32.

        An episode cut off by a timeout ends its sum there: the data holds nothing after it.
        """
        starts, stops = self.episode_bounds
        out = np.empty(len(self), dtype=np.float64)
        rewards = self.rewards.astype(np.float64)
        for start, stop in zip(starts.tolist(), stops.tolist()):
            if discount == 1.0:
                out[start:stop] = np.cumsum(rewards[start:stop][::-1])[::-1]
                continue
            running = 0.0
            for row in range(stop - 1, start - 1, -1):
                running = rewards[row] + discount * running
                out[row] = running
        return out.astype(np.float32)

    def next_actions(self) -> np.ndarray:
        """Per row, the action taken at the next row of the same episode (the row's own action at an episode's end)."""
        _, stops = self.episode_bounds
        following = np.concatenate([self.actions[1:], self.actions[-1:]])
        last = np.zeros(len(self), dtype=bool)
        last[stops - 1] = True
        mask = last.reshape(len(self), *([1] * (self.actions.ndim - 1)))
        return np.where(mask, self.actions, following)

    def episode(self, index: int) -> Episode:
        starts, stops = self.episode_bounds
        start, stop = int(starts[index]), int(stops[index])
        rows = slice(start, stop)
        return Episode(
            index=index,
            start=start,
            stop=stop,
            observations=tree_map(lambda a: a[rows], self.observations),
            actions=self.actions[rows],
            rewards=self.rewards[rows],
            next_observations=tree_map(lambda a: a[rows], self.next_observations),
            terminated=bool(self.terminals[stop - 1]),
            truncated=bool(self.timeouts[stop - 1]),
        )

    def episodes(self) -> Iterator[Episode]:
        for index in range(self.num_episodes):
            yield self.episode(index)

    # --------------------------------------------------------------- statistics

    def observation_stats(self, eps: float = 0.0, keys: tuple[str, ...] | None = None) -> tuple[Observations, Observations]:
        """Per-feature mean and standard deviation (plus ``eps``) of the observations, float32;
        with ``keys``, of those keys of dict observations only."""

        def mean(moments: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
            return moments[0].astype(np.float32)

        def std(moments: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
            return (moments[1] + eps).astype(np.float32)

        observations = self.observations if keys is None else {key: self.observations[key] for key in keys}
        moments = tree_map(mean_std, observations)  # in row chunks: a memory-mapped column stays on disk
        return tree_map(mean, moments), tree_map(std, moments)

    def summary(self) -> dict[str, Any]:
        """Size, spaces, episode and return statistics, as plain JSON-able values."""
        from offrl.spaces import space_to_json

        returns, lengths = self.episode_returns(), self.episode_lengths()
        nbytes = sum(a.nbytes for _, a in tree_items(self._columns(), "")) + sum(a.nbytes for a in self.infos.values())
        return {
            "source": self.source,
            "transitions": len(self),
            "episodes": self.num_episodes,
            "terminals": int(self.terminals.sum()),
            "timeouts": int(self.timeouts.sum()),
            "observation_space": space_to_json(self.observation_space),
            "action_space": space_to_json(self.action_space),
            "return": _stats(returns),
            "length": _stats(lengths),
            "reward": _stats(self.rewards),
            "infos": sorted(self.infos),
            "metadata": {k: v for k, v in self.metadata.items() if isinstance(v, (str, int, float, bool))},
            "memory_mb": round(nbytes / 2**20, 2),
        }

    def fingerprint(self) -> str:
        """A cheap content hash (sizes, sums, first and last rows) to notice a dataset that changed."""
        digest = hashlib.sha256()
        digest.update(f"{len(self)}:{self.num_episodes}:{float(self.rewards.sum(dtype=np.float64)):.6f}".encode())
        for _, array in tree_items(self._columns(), ""):
            digest.update(np.ascontiguousarray(array[:1]).tobytes())
            digest.update(np.ascontiguousarray(array[-1:]).tobytes())
        return digest.hexdigest()[:16]

    # --------------------------------------------------------------- selection

    def subset(self, episode_indices: Sequence[int] | np.ndarray) -> Dataset:
        """A dataset of the given episodes, in the given order."""
        starts, stops = self.episode_bounds
        indices = np.asarray(episode_indices, dtype=np.int64)
        if len(indices) == 0:
            raise ValueError("subset needs at least one episode")
        rows = np.concatenate([np.arange(starts[i], stops[i]) for i in indices])
        subset = self.take(rows)
        subset.metadata = _episode_metadata(self.metadata, indices, self.num_episodes)
        return subset

    def filter_key(self, name: str) -> Dataset:
        """The episodes a filter key names (``metadata["filter_keys"]``, e.g. robomimic's ``train`` and
        ``valid`` masks), in dataset order: the split the data's authors meant for validation."""
        filter_keys = self.metadata.get("filter_keys") or {}
        if name not in filter_keys:
            known = ", ".join(sorted(filter_keys)) or "none"
            raise DatasetError(self.source, f"no filter key {name!r} (known: {known})")
        if not filter_keys[name]:
            raise DatasetError(self.source, f"filter key {name!r} names no episode")
        return self.subset(sorted(filter_keys[name]))

    def split(self, fraction: float, *, seed: int = 0) -> tuple[Dataset, Dataset]:
        """Shuffle episodes and split them: ``fraction`` of the episodes in the first dataset."""
        first, second = self.split_episodes(fraction, seed=seed)
        return self.subset(first), self.subset(second)

    def split_episodes(self, fraction: float, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """The episode indices of ``split``: a shuffled ``fraction`` of them (at least one), and the rest (at least one)."""
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {fraction}")
        if self.num_episodes < 2:
            raise ValueError(f"{self.source}: cannot split a dataset of one episode by episode")
        order = np.random.default_rng(seed).permutation(self.num_episodes)
        cut = min(max(1, round(fraction * self.num_episodes)), self.num_episodes - 1)
        return np.sort(order[:cut]), np.sort(order[cut:])

    def take(self, rows: np.ndarray | slice) -> Dataset:
        """Rows by index. Keeps episode boundaries intact only when whole episodes are taken."""
        return dataclasses.replace(
            self,
            observations=tree_map(lambda a: a[rows], self.observations),
            actions=self.actions[rows],
            rewards=self.rewards[rows],
            next_observations=tree_map(lambda a: a[rows], self.next_observations),
            terminals=self.terminals[rows],
            timeouts=self.timeouts[rows],
            infos={key: value[rows] for key, value in self.infos.items()},
            metadata=dict(self.metadata),
        )

    # ------------------------------------------------------------------ device

    def to(self, device: torch.device | str = "cpu") -> Batch:
        """Every transition as tensors on ``device``: what samplers index into. On the CPU, memory-mapped
        columns are shared with the file, not copied."""
        device = torch.device(device)

        def tensor(array: np.ndarray) -> torch.Tensor:
            return as_tensor(array, device)

        return Batch(
            observations=tree_map(tensor, self.observations),
            actions=tensor(self.actions),
            rewards=tensor(self.rewards),
            next_observations=tree_map(tensor, self.next_observations),
            terminals=tensor(self.terminals.astype(np.float32)),
            timeouts=tensor(self.timeouts.astype(np.float32)),
        )

    def _columns(self) -> dict[str, Any]:
        return {
            "observations": self.observations,
            "actions": self.actions,
            "rewards": self.rewards,
            "next_observations": self.next_observations,
            "terminals": self.terminals,
            "timeouts": self.timeouts,
        }


def infer_observation_space(observations: Observations) -> gym.Space:
    if isinstance(observations, dict):
        return gym.spaces.Dict({key: infer_observation_space(value) for key, value in observations.items()})
    if observations.dtype == np.uint8:
        return gym.spaces.Box(0, 255, observations.shape[1:], np.uint8)
    return gym.spaces.Box(-np.inf, np.inf, observations.shape[1:], np.float32)


def infer_action_space(actions: np.ndarray) -> gym.Space:
    """Discrete for integer actions; for real actions [-1, 1] when the data fits in it, else the data's range."""
    if actions.dtype.kind in "iu":
        return gym.spaces.Discrete(int(actions.max()) + 1)
    low, high = actions.min(axis=0), actions.max(axis=0)
    if low.min() >= -1.0 - validation.ACTION_BOUND_TOLERANCE and high.max() <= 1.0 + validation.ACTION_BOUND_TOLERANCE:
        return gym.spaces.Box(-1.0, 1.0, actions.shape[1:], np.float32)
    return gym.spaces.Box(low.astype(np.float32), high.astype(np.float32), actions.shape[1:], np.float32)


# metadata entries holding one value per episode (robomimic's demo names), kept in step by ``subset``
EPISODE_METADATA = ("demos",)


def _episode_metadata(metadata: dict[str, Any], indices: np.ndarray, num_episodes: int) -> dict[str, Any]:
    """A subset's metadata: filter keys pointed at the episodes' new indices, per-episode lists
    reordered, so ``filter_key`` and writers still name the right episodes."""
    out = dict(metadata)
    filter_keys = out.get("filter_keys")
    if isinstance(filter_keys, dict):
        out["filter_keys"] = {
            key: np.flatnonzero(np.isin(indices, np.asarray(old, dtype=np.int64))).tolist()
            for key, old in filter_keys.items()
        }
    for key in EPISODE_METADATA:
        values = out.get(key)
        if isinstance(values, list) and len(values) == num_episodes:
            out[key] = [values[i] for i in indices.tolist()]
    return out


def _observation_dtype(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.view(np.uint8)  # 0/1 pixels (MinAtar), stored as images
    return array.astype(np.float32, copy=False)


def _stats(values: np.ndarray) -> dict[str, float]:
    values = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "max": float(values.max()),
    }



def concatenate(datasets: list[Dataset], *, source: str = "<concatenated>", metadata: dict[str, Any] | None = None) -> Dataset:
    """Datasets one after another, with the same spaces. Each part's last row ends an episode
    (as a timeout if it was not flagged), so no episode runs across two parts. Only the info
    keys every part has are kept."""
    if not datasets:
        raise ValueError("concatenate needs at least one dataset")
    first = datasets[0]
    for other in datasets[1:]:
        if other.observation_space != first.observation_space or other.action_space != first.action_space:
            raise ValueError(f"cannot concatenate {other.source}: its spaces differ from {first.source}'s")

    def join(arrays: list[Any]) -> Any:
        if isinstance(arrays[0], dict):
            return {key: join([a[key] for a in arrays]) for key in arrays[0]}
        return np.concatenate(arrays)

    timeouts = []
    for part in datasets:
        flags = part.timeouts.copy()
        flags[-1] |= not part.terminals[-1]
        timeouts.append(flags)
    shared_infos = set.intersection(*(set(d.infos) for d in datasets))
    return Dataset(
        observations=join([d.observations for d in datasets]),
        actions=join([d.actions for d in datasets]),
        rewards=join([d.rewards for d in datasets]),
        next_observations=join([d.next_observations for d in datasets]),
        terminals=join([d.terminals for d in datasets]),
        timeouts=np.concatenate(timeouts),
        observation_space=first.observation_space,
        action_space=first.action_space,
        infos={key: join([d.infos[key] for d in datasets]) for key in sorted(shared_infos)},
        metadata=dict(metadata or {}),
        source=source,
    )
