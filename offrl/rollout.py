"""Policies that act step by step in a vector of environments.

``RolloutPolicy`` is what evaluators and collectors drive:
``start_episode(indices)`` when episodes (re)start, ``__call__(observations)``
for actions, ``observe(rewards)`` after each step. Most algorithms are
stateless and only need ``act``; a sequence model (Decision Transformer) or a
recurrent policy keeps per-environment state between the calls.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class RolloutPolicy:
    def start_episode(self, env_indices: np.ndarray | None = None) -> None:
        """Forget the state of these environment slots (all when ``None``): new episodes start there."""

    def __call__(self, observations: Any) -> np.ndarray:
        raise NotImplementedError

    def observe(self, rewards: np.ndarray) -> None:
        """The rewards the last actions earned, one per slot."""


class StatelessRollout(RolloutPolicy):
    """``algo.act`` with numpy in and out."""

    def __init__(self, algo, *, deterministic: bool) -> None:
        self.algo = algo
        self.deterministic = deterministic

    def __call__(self, observations: Any) -> np.ndarray:
        with torch.no_grad():
            return self.algo.act(to_tensor(observations, self.algo.device), deterministic=self.deterministic).cpu().numpy()


def to_tensor(observations: Any, device: torch.device) -> Any:
    if isinstance(observations, dict):
        return {k: to_tensor(v, device) for k, v in observations.items()}
    array = np.asarray(observations)
    dtype = torch.uint8 if array.dtype == np.uint8 else torch.float32
    return torch.as_tensor(array, device=device).to(dtype)
