"""Policy heads, in the normalized action space [-1, 1]; ``ActionScaler`` maps to the env's bounds."""

from __future__ import annotations

import math
from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from offrl.errors import SpaceError
from offrl.nn.layers import MLP

Distribution = tuple[torch.Tensor, torch.Tensor]  # a Gaussian policy's (mean, log_std) at a batch of states


class ActionScaler(nn.Module):
    """Affine map between a bounded Box action space and [-1, 1]."""

    def __init__(self, action_space: gym.spaces.Box) -> None:
        super().__init__()
        low = np.broadcast_to(action_space.low, action_space.shape).astype(np.float32).reshape(-1)
        high = np.broadcast_to(action_space.high, action_space.shape).astype(np.float32).reshape(-1)
        if not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise SpaceError(f"action space {action_space} is unbounded: offrl's continuous policies need finite bounds")
        self.register_buffer("center", torch.as_tensor((high + low) / 2))
        self.register_buffer("half_range", torch.as_tensor(np.maximum((high - low) / 2, 1e-8)))

    def normalize(self, actions: torch.Tensor) -> torch.Tensor:
        return ((actions - self.center) / self.half_range).clamp(-1.0, 1.0)

    def denormalize(self, actions: torch.Tensor) -> torch.Tensor:
        return actions * self.half_range + self.center


class DeterministicPolicy(nn.Module):
    """obs features -> tanh action."""

    def __init__(self, in_dim: int, action_dim: int, hidden_dims: Sequence[int], **mlp_options) -> None:
        super().__init__()
        self.net = MLP(in_dim, hidden_dims, action_dim, output_activation="tanh", **mlp_options)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


class GaussianPolicy(nn.Module):
    """Diagonal Gaussian over actions with a tanh-bounded mean (not a squashed distribution).

    ``state_dependent_std=False`` gives IQL's policy (one learned log-std
    vector); ``True`` gives a second output head for the log-std, as in
    Gaussian behaviour cloning. ``tanh_mean=False`` leaves the mean
    unbounded (AWAC's policy); actions are clipped to [-1, 1] when sampled
    or taken. The mean is the deterministic action.
    """

    def __init__(
        self,
        in_dim: int,
        action_dim: int,
        hidden_dims: Sequence[int],
        *,
        state_dependent_std: bool,
        log_std_min: float = -5.0,
        log_std_max: float = 2.0,
        tanh_mean: bool = True,
        **mlp_options,
    ) -> None:
        super().__init__()
        self.action_dim = action_dim
        self.tanh_mean = tanh_mean
        self.state_dependent_std = state_dependent_std
        self.log_std_min, self.log_std_max = log_std_min, log_std_max
        out = 2 * action_dim if state_dependent_std else action_dim
        self.net = MLP(in_dim, hidden_dims, out, **mlp_options)
        if not state_dependent_std:
            self.log_std = nn.Parameter(torch.zeros(action_dim))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(features)
        if self.state_dependent_std:
            mean, log_std = out.split(self.action_dim, dim=-1)
        else:
            mean, log_std = out, self.log_std.expand_as(out)
        mean = torch.tanh(mean) if self.tanh_mean else mean
        return mean, log_std.clamp(self.log_std_min, self.log_std_max)

    def deterministic(self, features: torch.Tensor) -> torch.Tensor:
        return self(features)[0].clamp(-1.0, 1.0)

    def log_prob(self, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        mean, log_std = self(features)
        return gaussian_log_prob(mean, log_std, actions)

    def sample(self, features: torch.Tensor, samples: int | None = None) -> torch.Tensor:
        """Sampled actions; with ``samples``, that many per state from one forward pass: ``[B, samples, A]``."""
        return self.draw(self(features), samples)

    @staticmethod
    def draw(distribution: Distribution, samples: int | None = None) -> torch.Tensor:
        """Actions drawn from a ``(mean, log_std)`` this policy returned, so that a loss that also needs the
        log-density of the data actions (CRR, AWAC) runs the network once, not once for each."""
        mean, log_std = per_sample(distribution, samples)
        noise = torch.randn(mean.shape, device=mean.device, dtype=mean.dtype)
        return (mean + noise * log_std.exp()).clamp(-1.0, 1.0)


class GMMPolicy(nn.Module):
    """A mixture of ``num_modes`` diagonal Gaussians over actions (robomimic's GMM actor, Mandlekar et al. 2021).

    Per mode: a tanh-bounded mean, a standard deviation ``softplus(.) + min_std`` and a logit for its weight.
    Multi-modal demonstrations (half pass an obstacle on the left, half on the right) keep both modes, where
    a unimodal policy regresses to their average. Features may carry leading time axes (``[B, T, F]``).
    The deterministic action is the mean of the most likely mode; ``sample`` draws a mode, then an action.
    """

    def __init__(
        self, in_dim: int, action_dim: int, hidden_dims: Sequence[int], *, num_modes: int = 5, min_std: float = 1e-4, **mlp_options
    ) -> None:
        super().__init__()
        if num_modes < 1:
            raise ValueError(f"num_modes must be at least 1, got {num_modes}")
        self.action_dim, self.num_modes, self.min_std = action_dim, num_modes, min_std
        self.net = MLP(in_dim, hidden_dims, num_modes * (2 * action_dim + 1), **mlp_options)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Means and standard deviations ``[..., M, A]``, mode logits ``[..., M]``."""
        out = self.net(features)
        split = self.num_modes * self.action_dim
        means = torch.tanh(out[..., :split]).unflatten(-1, (self.num_modes, self.action_dim))
        stds = (F.softplus(out[..., split : 2 * split]) + self.min_std).unflatten(-1, (self.num_modes, self.action_dim))
        return means, stds, out[..., 2 * split :]

    def log_prob(self, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        means, stds, logits = self(features)
        per_mode = gaussian_log_prob(means, stds.log(), actions.unsqueeze(-2))  # [..., M]
        return torch.logsumexp(per_mode + F.log_softmax(logits, dim=-1), dim=-1)

    def deterministic(self, features: torch.Tensor) -> torch.Tensor:
        means, _, logits = self(features)
        index = logits.argmax(dim=-1)[..., None, None].expand(*means.shape[:-2], 1, self.action_dim)
        return means.gather(-2, index).squeeze(-2)

    def sample(self, features: torch.Tensor) -> torch.Tensor:
        means, stds, logits = self(features)
        mode = torch.distributions.Categorical(logits=logits).sample()
        index = mode[..., None, None].expand(*means.shape[:-2], 1, self.action_dim)
        mean, std = means.gather(-2, index).squeeze(-2), stds.gather(-2, index).squeeze(-2)
        return (mean + torch.randn_like(mean) * std).clamp(-1.0, 1.0)


def per_sample(distribution: Distribution, samples: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and log-std ``[B, A]`` viewed as ``[B, samples, A]`` (no copy), or unchanged when ``samples`` is None."""
    if samples is None:
        return distribution
    return tuple(t.unsqueeze(-2).expand(*t.shape[:-1], samples, t.shape[-1]) for t in distribution)


def gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Log-density of a diagonal Gaussian, summed over the action dimensions."""
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


class TanhGaussianPolicy(nn.Module):
    """A Gaussian squashed by tanh (SAC's policy): ``a = tanh(u)``, ``u ~ N(mean(s), std(s))``.

    ``sample`` returns reparameterized actions with their log-probabilities,
    including the change-of-variables term ``-sum log(1 - tanh(u)^2)``;
    the deterministic action is ``tanh(mean)``.
    """

    def __init__(
        self,
        in_dim: int,
        action_dim: int,
        hidden_dims: Sequence[int],
        *,
        log_std_min: float = -20.0,
        log_std_max: float = 2.0,
        **mlp_options,
    ) -> None:
        super().__init__()
        self.action_dim = action_dim
        self.log_std_min, self.log_std_max = log_std_min, log_std_max
        self.net = MLP(in_dim, hidden_dims, 2 * action_dim, **mlp_options)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(features).split(self.action_dim, dim=-1)
        return mean, log_std.clamp(self.log_std_min, self.log_std_max)

    def deterministic(self, features: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self(features)[0])

    def sample(
        self, features: torch.Tensor, generator: torch.Generator | None = None, samples: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterized actions and log-densities; with ``samples``, that many per state from one
        forward pass: ``[B, samples, A]`` and ``[B, samples]``."""
        return self.draw(self(features), generator, samples)

    def log_prob(self, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Log-density of given actions in [-1, 1]."""
        return self.density(self(features), actions)

    # On a ``(mean, log_std)`` this policy returned: an update that samples and scores at the same states
    # (CQL: the actor's loss, its targets and the conservative term's samples) runs the network once per states.

    @staticmethod
    def draw(
        distribution: Distribution, generator: torch.Generator | None = None, samples: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``sample`` from the distribution's ``(mean, log_std)``."""
        mean, log_std = per_sample(distribution, samples)
        noise = torch.randn(mean.shape, device=mean.device, dtype=mean.dtype, generator=generator)
        pre_tanh = mean + noise * log_std.exp()
        return torch.tanh(pre_tanh), gaussian_log_prob(mean, log_std, pre_tanh) - tanh_log_det(pre_tanh)

    @staticmethod
    def density(distribution: Distribution, actions: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
        """``log_prob`` under the distribution's ``(mean, log_std)`` (actions clipped away from the bounds by ``eps``)."""
        pre_tanh = torch.atanh(actions.clamp(-1.0 + eps, 1.0 - eps))
        return gaussian_log_prob(*distribution, pre_tanh) - tanh_log_det(pre_tanh)


def tanh_log_det(pre_tanh: torch.Tensor) -> torch.Tensor:
    """``sum log(1 - tanh(u)^2)``, written stably as ``2 (log 2 - u - softplus(-2u))``."""
    return (2.0 * (math.log(2.0) - pre_tanh - torch.nn.functional.softplus(-2.0 * pre_tanh))).sum(-1)


class CategoricalPolicy(nn.Module):
    """Logits over ``n`` discrete actions from a network's own trunk (``offrl.nn.encoders.make_trunk``)."""

    def __init__(self, trunk: nn.Module, n_actions: int, hidden_dims: Sequence[int], **mlp_options) -> None:
        super().__init__()
        self.trunk = trunk
        self.net = MLP(trunk.out_dim, hidden_dims, n_actions, **mlp_options)

    def forward(self, observations) -> torch.Tensor:
        return self.net(self.trunk(observations))

    def act(self, observations, deterministic: bool) -> torch.Tensor:
        logits = self(observations)
        if deterministic:
            return logits.argmax(dim=-1)
        return torch.distributions.Categorical(logits=logits).sample()
