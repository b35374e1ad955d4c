"""Q-function ensembles (one batched module) and state-value networks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from offrl.nn.layers import MLP, EnsembleMLP


class QEnsemble(nn.Module):
    """E Q-functions ``Q_e(s, a)`` in one module; ``forward`` returns ``[E, B]``.

    ``actions`` may be ``[B, A]`` (one action per state), ``[B, K, A]`` (K
    actions per state, evaluated in the same pass: output ``[E, B, K]``), or
    ``[E, B, A]`` with ``features`` ``[E, B, F]`` (a different input per member).
    ``frozen=True`` passes gradients to the inputs only (an actor's loss): no weight gradients are computed.
    """

    def __init__(
        self,
        in_dim: int,
        action_dim: int,
        hidden_dims: Sequence[int],
        *,
        ensemble_size: int = 2,
        layer_norm: bool = False,
        activation_name: str = "relu",
        init: str = "default",
        last_layer_scale: float | None = None,
    ) -> None:
        super().__init__()
        self.ensemble_size = ensemble_size
        self.net = EnsembleMLP(
            ensemble_size,
            in_dim + action_dim,
            hidden_dims,
            1,
            layer_norm=layer_norm,
            activation_name=activation_name,
            init=init,
            last_layer_scale=last_layer_scale,
        )

    def forward(
        self, features: torch.Tensor, actions: torch.Tensor, members: slice | None = None, *, frozen: bool = False
    ) -> torch.Tensor:
        if actions.dim() == 3 and features.dim() == 2:
            batch, samples = actions.shape[:2]
            repeated = features.unsqueeze(1).expand(batch, samples, features.shape[-1])
            inputs = torch.cat([repeated, actions], dim=-1).reshape(batch * samples, -1)
            return self.net(inputs, members, frozen).reshape(-1, batch, samples)
        return self.net(torch.cat([features, actions], dim=-1), members, frozen).squeeze(-1)


class ValueNetwork(nn.Module):
    """``V(s)``, shape ``[B]``."""

    def __init__(self, in_dim: int, hidden_dims: Sequence[int], **mlp_options) -> None:
        super().__init__()
        self.net = MLP(in_dim, hidden_dims, 1, **mlp_options)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(-1)


class DiscreteQNetwork(nn.Module):
    """``Q(s, .)`` of every discrete action in one pass: ``[E, B, n]``, or ``[E, B, n, quantiles]``
    for a quantile (QR-DQN) critic. The E members share the network's trunk."""

    def __init__(
        self,
        trunk: nn.Module,
        n_actions: int,
        hidden_dims: Sequence[int],
        *,
        ensemble_size: int = 1,
        quantiles: int = 0,
        activation_name: str = "relu",
    ) -> None:
        super().__init__()
        self.trunk = trunk
        self.n_actions, self.quantiles = n_actions, quantiles
        self.head = EnsembleMLP(ensemble_size, trunk.out_dim, hidden_dims, n_actions * max(quantiles, 1), activation_name=activation_name)

    def forward(self, observations) -> torch.Tensor:
        out = self.head(self.trunk(observations))
        return out.unflatten(-1, (self.n_actions, self.quantiles)) if self.quantiles else out

    def values(self, observations) -> torch.Tensor:
        """Expected values ``[E, B, n]`` (the quantiles' mean for a quantile critic)."""
        out = self(observations)
        return out.mean(-1) if self.quantiles else out
