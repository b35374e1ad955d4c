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


class FrameStackRollout(RolloutPolicy):
    """Feeds ``inner`` the last ``frames`` observations of each environment slot, ``[n, frames, *frame]``,
    as the frame-stacking sampler builds them in training: at an episode's start the first frame
    fills the stack. For dict observations only ``keys`` are stacked."""

    def __init__(self, inner: RolloutPolicy, frames: int, num_envs: int, keys: list[str] | None = None) -> None:
        self.inner = inner
        self.frames = frames
        self.keys = keys
        self.stacks: dict[str | None, np.ndarray] = {}
        self.fresh = np.ones(num_envs, dtype=bool)

    def start_episode(self, env_indices: np.ndarray | None = None) -> None:
        if env_indices is None:
            self.fresh[:] = True
        else:
            self.fresh[env_indices] = True
        self.inner.start_episode(env_indices)

    def _push(self, name: str | None, frames: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames)
        stack = self.stacks.get(name)
        if stack is None or stack.shape[0] != frames.shape[0]:
            stack = self.stacks[name] = np.repeat(frames[:, None], self.frames, axis=1)
        else:
            stack[:, :-1] = stack[:, 1:]
            stack[:, -1] = frames
        stack[self.fresh] = frames[self.fresh][:, None]
        return stack

    def __call__(self, observations: Any) -> np.ndarray:
        if isinstance(observations, dict):
            stacked = {k: self._push(k, v) if k in self.keys else v for k, v in observations.items()}
        else:
            stacked = self._push(None, observations)
        self.fresh[:] = False
        return self.inner(stacked)

    def observe(self, rewards: np.ndarray) -> None:
        self.inner.observe(rewards)
