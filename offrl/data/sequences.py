"""Windows of consecutive steps from one episode, for sequence models (Decision Transformer, BC-RNN).

A start row is drawn uniformly over the dataset (so episodes are drawn in
proportion to their length, as Decision Transformer and robomimic do), the
window takes up to ``length`` rows from there without crossing the episode's
end. A short window is padded on the left by default, so its last position
is always a real step (a context that ends at the present); ``pad="right"``
pads after the episode's end instead, so the first position is always a real
step (a recurrent network starts from its initial state on real data).
``mask`` marks real steps; padded positions hold zeros. Returns-to-go are undiscounted sums of the
episode's remaining rewards in the data; an episode cut off by a timeout
sums to its last recorded reward.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
import torch

from offrl.data.batch import Batch
from offrl.data.dataset import Dataset
from offrl.data.tree import tree_map

TensorTree = torch.Tensor | dict[str, torch.Tensor]


@dataclasses.dataclass
class SequenceBatch:
    observations: TensorTree  # [B, K, ...]
    actions: torch.Tensor  # [B, K, A] (or [B, K] for discrete actions)
    returns_to_go: torch.Tensor  # [B, K]
    timesteps: torch.Tensor  # [B, K], int64, step index within the episode
    mask: torch.Tensor  # [B, K], bool, True at real (not padded) steps
    future_observations: TensorTree | None = None  # [B, ...]: ``future`` steps after the window's first step (HBC's subgoal)
    first_transitions: Batch | None = None  # the transitions of the windows' first steps (IRIS's value learning)

    def __len__(self) -> int:
        return len(self.mask)


@dataclasses.dataclass(frozen=True)
class SequenceSpec:
    """What a sequence model's batches hold (``Algorithm.sequence_window``)."""

    length: int  # steps per window
    pad: Literal["left", "right"] = "left"  # where short windows are padded
    future: int | None = None  # also the observation this many steps after each window's first step
    first_transitions: bool = False  # also the full transitions (rewards, next observations, terminals) of the first steps


class SequenceSampler:
    def __init__(
        self,
        dataset: Dataset,
        length: int,
        batch_size: int,
        *,
        pad: Literal["left", "right"] = "left",
        future: int | None = None,
        first_transitions: bool = False,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ) -> None:
        """``future``: also return the observation that many steps after each window's first step (the episode's
        last observation when it ends before)."""
        if length < 1:
            raise ValueError(f"sequence length must be positive, got {length}")
        if pad not in ("left", "right"):
            raise ValueError(f"pad must be 'left' or 'right', got {pad!r}")
        self.length, self.batch_size, self.pad = length, batch_size, pad
        self.device = torch.device(device)
        starts, stops = dataset.episode_bounds
        lengths = stops - starts
        episode_of_row = np.repeat(np.arange(len(starts)), lengths)
        data = dataset.to(self.device)
        self.observations, self.actions = data.observations, data.actions
        self.future = future
        self.next_observations = data.next_observations if future else None
        self.data = data if first_transitions else None
        self.returns_to_go = torch.as_tensor(dataset.returns_to_go(1.0), device=self.device)
        self.timesteps = torch.as_tensor(np.arange(len(dataset)) - starts[episode_of_row], device=self.device)
        self.stops = torch.as_tensor(stops[episode_of_row], device=self.device)
        self.size = len(dataset)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self._positions = torch.arange(length, device=self.device)

    def sample(self) -> SequenceBatch:
        start = torch.randint(self.size, (self.batch_size,), device=self.device, generator=self.generator)
        steps = torch.minimum(self.stops[start] - start, torch.tensor(self.length, device=self.device))
        if self.pad == "left":
            offsets = self._positions[None, :] - (self.length - steps)[:, None]  # negative: padding
            mask = offsets >= 0
        else:
            offsets = self._positions[None, :].expand(len(start), -1)
            mask = offsets < steps[:, None]
        rows = start[:, None] + torch.minimum(offsets.clamp(min=0), steps[:, None] - 1)

        def gather(column: torch.Tensor) -> torch.Tensor:
            values = column[rows]
            pad = mask.reshape(*mask.shape, *([1] * (values.dim() - 2)))
            return torch.where(pad, values, torch.zeros((), dtype=values.dtype, device=values.device))

        future = None
        if self.future:  # the observation after row start + future - 1: next_observations of that row, within the episode
            row = torch.minimum(start + self.future - 1, self.stops[start] - 1)
            future = tree_map(lambda column: column[row], self.next_observations)
        return SequenceBatch(
            observations=tree_map(gather, self.observations),
            actions=gather(self.actions),
            returns_to_go=gather(self.returns_to_go),
            timesteps=gather(self.timesteps),
            mask=mask,
            future_observations=future,
            first_transitions=None if self.data is None else self.data.index(start),
        )

    def get_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)
