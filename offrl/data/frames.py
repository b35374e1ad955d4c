"""Frame stacking at sampling time: datasets store single frames, batches get the last K of each.

A stacked observation of row ``i`` is the frames of rows ``i-K+1 .. i``; rows before the start of
``i``'s episode repeat the episode's first frame (what ``FrameStackRollout`` feeds the policy at an
episode's start), so a stack never crosses into the previous episode. The next observation's stack is
rows ``i-K+2 .. i`` followed by ``next_observations[i]``, so it holds for the last row of an episode
too. Nothing is copied K times: one gather per batch.
"""

from __future__ import annotations

import numpy as np
import torch

from offrl.data.batch import Batch


class FrameStackSampler:
    """Uniform batches like ``UniformSampler``, with the ``keys`` of dict observations (or the whole
    observation when ``keys`` is None) stacked to ``[B, frames, *frame]``."""

    def __init__(
        self,
        data: Batch,
        episode_starts: np.ndarray,
        frames: int,
        batch_size: int,
        *,
        keys: list[str] | None = None,
        seed: int = 0,
    ) -> None:
        if frames < 2:
            raise ValueError(f"frame stacking needs at least 2 frames, got {frames}")
        self.data = data
        self.size = len(data)
        self.frames = frames
        self.batch_size = batch_size
        self.keys = keys
        self.device = data.device
        self.row_starts = torch.as_tensor(np.asarray(episode_starts, dtype=np.int64), device=self.device)
        self.offsets = torch.arange(-(frames - 1), 1, device=self.device)  # [K]: -K+1 .. 0
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    def sample(self, batch_size: int | None = None) -> Batch:
        batch_size = batch_size or self.batch_size
        rows = torch.randint(self.size, (batch_size,), device=self.device, generator=self.generator)
        batch = self.data.index(rows)
        # [B, K] row numbers of the stacks, clamped at each row's episode start
        stack_rows = torch.maximum(rows[:, None] + self.offsets, self.row_starts[rows][:, None])
        return stack_batch(batch, self.data.observations, stack_rows, self.keys)

    def get_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)


def stack_batch(batch: Batch, frames: torch.Tensor | dict[str, torch.Tensor], stack_rows: torch.Tensor, keys: list[str] | None) -> Batch:
    """``batch`` with its observations (the ``keys`` of dict observations; all when None) replaced by the stacks of
    ``stack_rows`` ``[B, K]`` from ``frames``, the stored single frames, and its next observations by the stacks one
    step later."""
    if keys is None:
        batch.observations, batch.next_observations = _stack(frames, stack_rows, batch.next_observations)
        return batch
    for key in keys:
        batch.observations[key], batch.next_observations[key] = _stack(frames[key], stack_rows, batch.next_observations[key])
    return batch


def _stack(frames: torch.Tensor, stack_rows: torch.Tensor, next_frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The stacks ``[B, K, *frame]`` of ``stack_rows`` and the stacks one step later (ending in ``next_frame``)."""
    batch, count = stack_rows.shape
    gathered = frames.index_select(0, stack_rows.reshape(-1)).view(batch, count, *frames.shape[1:])
    following = torch.cat([gathered[:, 1:], next_frame.unsqueeze(1)], dim=1)
    return gathered, following


def episode_row_starts(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """For every row, the first row of its episode."""
    return np.repeat(starts, stops - starts)
