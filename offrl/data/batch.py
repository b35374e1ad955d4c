"""A batch of transitions as named tensors on the training device."""

from __future__ import annotations

import dataclasses

import torch

from offrl.data.tree import tree_map

TensorTree = torch.Tensor | dict[str, torch.Tensor]


@dataclasses.dataclass
class Batch:
    """Transitions as tensors: ``rewards``, ``terminals`` and ``timeouts`` are float ``[B]``.

    ``terminals`` is 1.0 where the episode ended in a terminal state, so a TD
    target is ``rewards + discount * (1 - terminals) * next_value``.
    Optional columns are ``None`` unless a sampler fills them.
    """

    observations: TensorTree
    actions: torch.Tensor
    rewards: torch.Tensor
    next_observations: TensorTree
    terminals: torch.Tensor
    timeouts: torch.Tensor | None = None
    mc_returns: torch.Tensor | None = None  # discounted return-to-go (Monte-Carlo), for Cal-QL; NaN where unknown
    next_actions: torch.Tensor | None = None  # the dataset's next action in the episode, for ReBRAC; NaN where unknown

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def device(self) -> torch.device:
        return self.rewards.device

    def map(self, fn) -> Batch:
        """Apply ``fn`` to every tensor (observation dicts included); ``None`` columns stay ``None``."""
        values = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            values[field.name] = None if value is None else tree_map(fn, value)
        return Batch(**values)

    def index(self, indices: torch.Tensor) -> Batch:
        return self.map(lambda t: t.index_select(0, indices))

    def to(self, device: torch.device | str) -> Batch:
        return self.map(lambda t: t.to(device))

