"""Batch-Constrained Q-learning (continuous): a VAE proposes in-distribution actions, a small
perturbation actor adjusts them, and the critic picks the best.

Fujimoto, Meger & Precup 2019, "Off-Policy Deep Reinforcement Learning
without Exploration". Defaults are the paper's: VAE (750, 750) with latent
2 x |A|, actor and critics (400, 300), perturbation at most 0.05, soft
clipped double-Q with lambda 0.75, 10 candidate actions in the target and
100 when acting, learning rates 1e-3, batch 100.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from offrl.algos.base import Algorithm
from offrl.algos.common import adam, critic_loss, parameter_lists, repeat_rows, soft_update, step, td_target
from offrl.algos.registry import register
from offrl.data.batch import Batch
from offrl.nn.critics import QEnsemble
from offrl.nn.encoders import EncoderConfig
from offrl.nn.layers import MLP
from offrl.nn.vae import ConditionalVAE, vae_loss


@dataclasses.dataclass
class BCQConfig(EncoderConfig):
    discount: float = 0.99  # reward discount
    tau: float = 0.005  # target-network Polyak rate
    lmbda: float = 0.75  # soft clipped double-Q: lmbda * min + (1 - lmbda) * max
    max_perturbation: float = 0.05  # phi: how far the actor may move a VAE action (normalized units)
    actor_lr: float = 1e-3  # perturbation actor Adam learning rate
    critic_lr: float = 1e-3  # critic Adam learning rate
    vae_lr: float = 1e-3  # VAE Adam learning rate
    hidden_dims: tuple[int, ...] = (400, 300)  # actor and critic widths
    vae_hidden_dims: tuple[int, ...] = (750, 750)  # VAE encoder and decoder widths
    latent_dim: int | None = None  # None: 2 x action_dim
    kl_weight: float = 0.5  # weight of the KL term of the VAE loss
    num_target_actions: int = 10  # candidate next actions in the TD target
    num_eval_actions: int = 100  # candidate actions when acting
    num_critics: int = 2  # critics; lmbda mixes their min and max
    batch_size: int = 100  # transitions per gradient step
    normalize_observations: bool = False  # BCQ trains on raw states


class PerturbationActor(nn.Module):
    """``xi(s, a)`` in [-phi, phi]; the action taken is ``clip(a + xi, -1, 1)``."""

    def __init__(self, in_dim: int, action_dim: int, hidden_dims, max_perturbation: float) -> None:
        super().__init__()
        self.net = MLP(in_dim + action_dim, hidden_dims, action_dim, output_activation="tanh")
        self.max_perturbation = max_perturbation

    def forward(self, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        xi = self.max_perturbation * self.net(torch.cat([features, actions], dim=-1))
        return (actions + xi).clamp(-1.0, 1.0)


def soft_clipped_q(q: torch.Tensor, lmbda: float) -> torch.Tensor:
    """BCQ's mix of the ensemble's min and max, ``[E, ...] -> [...]``."""
    return lmbda * q.min(dim=0).values + (1.0 - lmbda) * q.max(dim=0).values


@register("bcq", paper="Fujimoto et al. 2019, Off-Policy Deep Reinforcement Learning without Exploration")
class BCQ(Algorithm):
    Config = BCQConfig
    shared_trunk = True

    def __init__(self, observation_space, action_space, config: BCQConfig) -> None:
        super().__init__(observation_space, action_space, config)
        width = self.encoder.out_dim
        latent = config.latent_dim or 2 * self.action_dim
        self.vae = ConditionalVAE(width, self.action_dim, config.vae_hidden_dims, latent)
        self.actor = PerturbationActor(width, self.action_dim, config.hidden_dims, config.max_perturbation)
        self.critic = QEnsemble(width, self.action_dim, config.hidden_dims, ensemble_size=config.num_critics)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.optimizers = {
            "vae": adam(self.vae.parameters(), config.vae_lr),
            "actor": adam(self.actor.parameters(), config.actor_lr),
            # the critic's loss trains the image trunk, when there is one
            "critic": adam([*self.critic.parameters(), *self.encoder.parameters()], config.critic_lr),
        }
        self._targets = [parameter_lists(self.actor_target, self.actor), parameter_lists(self.critic_target, self.critic)]

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        features = self.encoder(batch.observations)
        actions = self.action_scaler.normalize(batch.actions)
        loss, metrics = vae_loss(self.vae, features.detach(), actions, cfg.kl_weight)
        step(self.optimizers["vae"], loss)

        with torch.no_grad():
            count = cfg.num_target_actions
            next_features = repeat_rows(self.encoder(batch.next_observations), count)
            candidates = self.actor_target(next_features, self.vae.decode(next_features))
            next_q = soft_clipped_q(self.critic_target(next_features, candidates), cfg.lmbda)
            next_q = next_q.reshape(-1, count).max(dim=1).values
            targets = td_target(batch.rewards, batch.terminals, cfg.discount, next_q)
        loss, critic_metrics = critic_loss(self.critic, features, actions, targets)
        step(self.optimizers["critic"], loss)

        features = features.detach()
        with torch.no_grad():
            proposals = self.vae.decode(features)
        actor_loss = -self.critic(features, self.actor(features, proposals), members=slice(0, 1), frozen=True).mean()
        step(self.optimizers["actor"], actor_loss)
        for target, online in self._targets:
            soft_update(target, online, cfg.tau)
        self.num_updates += 1
        metrics.update({**critic_metrics, "actor_loss": actor_loss.detach()})
        return metrics

    @torch.no_grad()
    def act(self, observations, deterministic: bool = True) -> torch.Tensor:
        """The best of ``num_eval_actions`` perturbed VAE proposals by Q1. Deterministic acting draws the
        proposals' latents from a fixed seed, so an observation always gets the same action."""
        return self.action_scaler.denormalize(self.best_proposal(observations, deterministic)[0])

    @torch.no_grad()
    def best_proposal(self, observations, deterministic: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """The best normalized action among the perturbed proposals of each observation and its Q1: the
        policy's action and the state's value as BCQ estimates it (IRIS scores subgoals with the latter)."""
        count = self.config.num_eval_actions
        features = repeat_rows(self.encoder(observations), count)
        generator = None
        if deterministic:
            generator = torch.Generator(device=features.device).manual_seed(0)
        candidates = self.actor(features, self.vae.decode(features, generator=generator))
        q = self.critic(features, candidates, members=slice(0, 1))[0].reshape(-1, count)
        best = q.max(dim=1)
        rows = torch.arange(len(best.indices), device=q.device)
        return candidates.reshape(-1, count, candidates.shape[-1])[rows, best.indices], best.values
