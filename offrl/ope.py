"""Off-policy evaluation: what a policy's return would be, estimated from logged data alone.

Fitted Q Evaluation (Le, Voloshin and Yue, "Batch Policy Learning under
Constraints", 2019; the estimator d3rlpy offers as ``FQE``): a Q-function of
the *evaluated* policy is fitted to the dataset's transitions by regression on
``r + gamma * (1 - terminal) * Q'(s', pi(s'))`` (a slowly moving target copy
``Q'``), and the policy's value is the mean of ``Q(s0, pi(s0))`` over the
dataset's episode starts. Time-limit truncations bootstrap, so the estimate is
of the discounted return without the time limit.

The policy is fixed while Q is fitted, so its actions on every next
observation are computed once. Observations (vectors, or dicts of vectors) are
standardized with the dataset's statistics; discrete actions enter one-hot.
Rewards are divided by their largest magnitude while fitting and the estimate
is scaled back. Regression targets are clipped to the returns the data's
rewards allow (``min(0, r_min) / (1 - gamma)`` to ``max(0, r_max) / (1 - gamma)``):
where the policy leaves the data, Q-functions extrapolate, and without the
bounds the fitted values of such a policy can grow without limit. Clipping
keeps them possible, not right: FQE favours policies that leave the data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from offrl.data.dataset import Dataset
from offrl.data.tree import tree_first, tree_map
from offrl.errors import OffrlError
from offrl.nn.layers import MLP
from offrl.rollout import to_tensor

Policy = Callable[[Any], torch.Tensor]  # a batch of raw observations (tensors) -> actions in the environment's space


@dataclasses.dataclass
class FQEResult:
    value: float  # estimated discounted return from the dataset's episode starts
    initial_states: int
    loss: float  # the regression loss over the last tenth of the fitting steps (in scaled reward units)


def fitted_q_evaluation(
    policy: Policy,
    dataset: Dataset,
    *,
    steps: int = 5_000,
    batch_size: int = 256,
    gamma: float = 0.99,
    lr: float = 3e-4,
    hidden_dims: tuple[int, ...] = (256, 256),
    tau: float = 0.02,  # a fast target: value estimates need many bootstrapping rounds
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> FQEResult:
    """Estimate ``policy``'s discounted return on ``dataset``'s episode starts (see the module docstring)."""
    if steps < 1 or batch_size < 1 or not 0 < gamma < 1:
        raise OffrlError(f"fitted Q evaluation needs steps >= 1, batch_size >= 1 and 0 < gamma < 1 (got {steps}, {batch_size}, {gamma})")
    device = torch.device(device)
    features = _Features(dataset.observation_space, dataset.source)
    mean, std = features.statistics(dataset.observations)
    encode = lambda obs: (features(obs, device) - mean.to(device)) / std.to(device)  # noqa: E731
    actions = _ActionCoder(dataset.action_space, dataset.source)
    starts, _ = dataset.episode_bounds

    with torch.no_grad():
        x = torch.cat([encode(dataset.observations), actions.encode(dataset.actions, device)], dim=1)
        next_x = torch.cat([encode(dataset.next_observations), _act(policy, dataset.next_observations, actions, device)], dim=1)
        first = _rows(dataset.observations, starts)
        initial_x = torch.cat([encode(first), _act(policy, first, actions, device)], dim=1)
    rewards = torch.as_tensor(dataset.rewards, dtype=torch.float32, device=device)
    scale = float(rewards.abs().max()) or 1.0
    rewards = rewards / scale
    low, high = min(0.0, float(rewards.min())) / (1 - gamma), max(0.0, float(rewards.max())) / (1 - gamma)
    alive = 1.0 - torch.as_tensor(dataset.terminals, dtype=torch.float32, device=device)

    generator = torch.Generator(device="cpu").manual_seed(seed)
    torch.manual_seed(seed)
    q = MLP(x.shape[1], list(hidden_dims), 1).to(device)
    target = MLP(x.shape[1], list(hidden_dims), 1).to(device)
    target.load_state_dict(q.state_dict())
    target.requires_grad_(False)
    optimizer = torch.optim.Adam(q.parameters(), lr=lr)
    tail, losses = max(1, steps // 10), []
    for step in range(steps):
        rows = torch.randint(len(x), (batch_size,), generator=generator).to(device)
        with torch.no_grad():
            y = (rewards[rows] + gamma * alive[rows] * target(next_x[rows]).squeeze(-1)).clamp_(low, high)
        loss = F.mse_loss(q(x[rows]).squeeze(-1), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(list(target.parameters()), list(q.parameters()), tau)
        if step >= steps - tail:
            losses.append(loss.detach())
    with torch.no_grad():
        value = float(q(initial_x).mean()) * scale
    if not np.isfinite(value):
        raise OffrlError(f"{dataset.source}: fitted Q evaluation diverged (the policy's actions may be NaN)")
    return FQEResult(value=value, initial_states=len(starts), loss=float(torch.stack(losses).mean()))


def algo_policy(algo) -> Policy:
    """An offrl algorithm's greedy policy, for :func:`fitted_q_evaluation`."""

    def act(observations: Any) -> torch.Tensor:
        training = algo.training
        algo.train(False)
        try:
            return algo.act(observations, deterministic=True)
        finally:
            algo.train(training)

    return act


CHUNK = 65_536  # rows per policy call while precomputing actions


def _act(policy: Policy, observations: Any, coder: "_ActionCoder", device: torch.device) -> torch.Tensor:
    parts = []
    for start in range(0, len(tree_first(observations)), CHUNK):
        chunk = to_tensor(_rows(observations, slice(start, start + CHUNK)), device)
        parts.append(coder.encode(policy(chunk), device))
    return torch.cat(parts)


def _rows(observations: Any, index) -> Any:
    return tree_map(lambda column: np.asarray(column[index]), observations)


def _flat_rows(values: Any, device: torch.device) -> torch.Tensor:
    """One observation column as float rows ``[N, D]``."""
    tensor = values if torch.is_tensor(values) else torch.as_tensor(np.asarray(values))
    return tensor.to(device=device, dtype=torch.float32).reshape(len(tensor), -1)


def check_fqe_observations(space: gym.Space, source: str) -> None:
    """Fitted Q evaluation reads vector observations (a Box, or a dict of them): anything else is an error naming ``source``."""
    spaces = space.spaces if isinstance(space, gym.spaces.Dict) else {None: space}
    for key, sub in spaces.items():
        if not isinstance(sub, gym.spaces.Box) or sub.dtype == np.uint8 or len(sub.shape) > 1:
            what = "observations" if key is None else f"observation key {key!r}"
            raise OffrlError(f"{source}: fitted Q evaluation fits an MLP on vector observations; {what} is {sub}")


class _Features:
    """Observations as one float vector per row: a vector, or a dict of vectors concatenated in key order."""

    def __init__(self, space: gym.Space, source: str) -> None:
        check_fqe_observations(space, source)
        self.keys = list(space.spaces) if isinstance(space, gym.spaces.Dict) else None

    def __call__(self, observations: Any, device: torch.device) -> torch.Tensor:
        if self.keys is None:
            return _flat_rows(observations, device)
        return torch.cat([_flat_rows(observations[key], device) for key in self.keys], dim=1)

    def statistics(self, observations: Any) -> tuple[torch.Tensor, torch.Tensor]:
        values = self(observations, torch.device("cpu"))
        return values.mean(0), values.std(0).clamp_min(1e-3)


class _ActionCoder:
    def __init__(self, space: gym.Space, source: str) -> None:
        if isinstance(space, gym.spaces.Discrete):
            self.classes = int(space.n)
        elif isinstance(space, gym.spaces.Box):
            self.classes = None
        else:
            raise OffrlError(f"{source}: fitted Q evaluation takes Box or Discrete actions, not {space}")

    def encode(self, actions: Any, device: torch.device) -> torch.Tensor:
        actions = torch.as_tensor(np.asarray(actions) if not torch.is_tensor(actions) else actions, device=device)
        if self.classes is not None:
            return F.one_hot(actions.long().reshape(-1), self.classes).float()
        return actions.float().reshape(len(actions), -1)


__all__ = ["FQEResult", "algo_policy", "fitted_q_evaluation"]
