"""Observation encoders. Normalization lives here, so it travels with every network and checkpoint."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from offrl.data.tree import tree_map


class FlatEncoder(nn.Module):
    """Vector observations (one Box, or a Dict of Boxes) -> normalized, concatenated features ``[B, D]``.

    Normalization is ``(x - mean) / std`` with statistics set from a dataset
    (``set_statistics``); until then it is the identity. Dict keys are
    concatenated in sorted order.
    """

    def __init__(self, observation_space: gym.Space) -> None:
        super().__init__()
        if isinstance(observation_space, gym.spaces.Dict):
            self.keys: list[str] | None = sorted(observation_space.spaces)
            spaces = [observation_space.spaces[k] for k in self.keys]
        else:
            self.keys = None
            spaces = [observation_space]
        for space in spaces:
            if not isinstance(space, gym.spaces.Box) or (space.dtype == np.uint8 and len(space.shape) >= 2):
                raise ValueError(
                    f"observation space {space} is not a vector: image observations need an image encoder"
                )
        self.widths = [int(np.prod(space.shape)) for space in spaces]
        self.out_dim = sum(self.widths)
        self.register_buffer("mean", torch.zeros(self.out_dim))
        self.register_buffer("std", torch.ones(self.out_dim))

    def set_statistics(self, mean: np.ndarray | dict[str, np.ndarray], std: np.ndarray | dict[str, np.ndarray]) -> None:
        flat_mean = self._concat_numpy(mean)
        flat_std = self._concat_numpy(std)
        if np.any(flat_std <= 0):
            raise ValueError("observation std must be positive: add an epsilon")
        self.mean.copy_(torch.as_tensor(flat_mean))
        self.std.copy_(torch.as_tensor(flat_std))

    def forward(self, observations: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        if self.keys is None:
            x = observations.reshape(observations.shape[0], -1)
        else:
            x = torch.cat([observations[k].reshape(observations[k].shape[0], -1) for k in self.keys], dim=-1)
        return (x.float() - self.mean) / self.std

    def _concat_numpy(self, value: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
        flat = tree_map(lambda a: np.asarray(a, dtype=np.float32).reshape(-1), value)
        if self.keys is None:
            return flat
        return np.concatenate([flat[k] for k in self.keys])
