"""The conditional VAE behaviour model of BCQ (Fujimoto et al. 2019), reused by PLAS."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from offrl.nn.layers import MLP


class ConditionalVAE(nn.Module):
    """``q(z | s, a)`` and ``p(a | s, z)``; actions in [-1, 1] (tanh decoder), or unbounded outputs with
    ``bounded=False`` (HBC's planner decodes standardized subgoal observations)."""

    def __init__(self, in_dim: int, action_dim: int, hidden_dims: Sequence[int], latent_dim: int, *, bounded: bool = True) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = MLP(in_dim + action_dim, hidden_dims, 2 * latent_dim)
        self.decoder = MLP(in_dim + latent_dim, hidden_dims, action_dim, output_activation="tanh" if bounded else None)

    def forward(self, features: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mean, log_std = self.encoder(torch.cat([features, actions], dim=-1)).split(self.latent_dim, dim=-1)
        log_std = log_std.clamp(-4.0, 15.0)  # the bounds of BCQ's reference code
        latent = mean + torch.randn_like(mean) * log_std.exp()
        return self.decode(features, latent), mean, log_std

    def decode(
        self, features: torch.Tensor, latent: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Decode ``latent``; without one, draw it from N(0, 1) clipped to [-0.5, 0.5] as BCQ does."""
        if latent is None:
            shape = (features.shape[0], self.latent_dim)
            latent = torch.randn(shape, device=features.device, generator=generator).clamp(-0.5, 0.5)
        return self.decoder(torch.cat([features, latent], dim=-1))


def vae_loss(vae: ConditionalVAE, features: torch.Tensor, actions: torch.Tensor, kl_weight: float) -> tuple[torch.Tensor, dict]:
    """Reconstruction MSE plus ``kl_weight`` x KL(q(z | s, a) || N(0, 1)), as BCQ's code (weight 0.5)."""
    reconstruction, mean, log_std = vae(features, actions)
    recon = (reconstruction - actions).pow(2).mean()
    kl = (-0.5 * (1 + 2 * log_std - mean.pow(2) - (2 * log_std).exp())).mean()
    loss = recon + kl_weight * kl
    return loss, {"vae_loss": loss.detach(), "vae_recon": recon.detach(), "vae_kl": kl.detach()}
