"""PLAS: the policy acts in the latent space of a behaviour VAE, so its actions stay on the data.

Zhou, Bajracharya & Held 2020, "PLAS: Latent Action Space for Offline
Reinforcement Learning". The VAE (BCQ's) is trained first, alone, for
``vae_pretrain_steps``; then a deterministic latent policy ``z = pi(s)`` in
[-2, 2] is trained through the frozen decoder to maximize Q, with
TD3-style critics mixing min and max as BCQ does. With image observations
the VAE's loss trains the CNN trunk during pre-training, and the trunk is
frozen with the VAE, whose decoder reads its features.
"""

from __future__ import annotations

import copy
import dataclasses

import torch

from offrl.algos.base import Algorithm
from offrl.algos.bcq import soft_clipped_q
from offrl.algos.common import adam, critic_loss, parameter_lists, soft_update, step, td_target
from offrl.algos.registry import register
from offrl.data.batch import Batch
from offrl.nn.critics import QEnsemble
from offrl.nn.encoders import EncoderConfig
from offrl.nn.layers import MLP
from offrl.nn.vae import ConditionalVAE, vae_loss


@dataclasses.dataclass
class PLASConfig(EncoderConfig):
    discount: float = 0.99  # reward discount
    tau: float = 0.005  # target-network Polyak rate
    lmbda: float = 0.75  # soft clipped double-Q: lmbda * min + (1 - lmbda) * max
    actor_lr: float = 1e-4  # latent policy Adam learning rate
    critic_lr: float = 1e-3  # critic Adam learning rate
    vae_lr: float = 1e-4  # VAE Adam learning rate
    vae_pretrain_steps: int = 500_000  # VAE-only steps before the policy and critics train
    max_latent: float = 2.0  # the latent policy's output range [-max_latent, max_latent]
    hidden_dims: tuple[int, ...] = (400, 300)  # latent policy and critic widths
    vae_hidden_dims: tuple[int, ...] = (750, 750)  # VAE encoder and decoder widths
    latent_dim: int | None = None  # None: 2 x action_dim
    kl_weight: float = 0.5  # weight of the KL term of the VAE loss
    num_critics: int = 2  # critics; lmbda mixes their min and max
    batch_size: int = 100  # transitions per gradient step
    normalize_observations: bool = False  # PLAS trains on raw states


@register("plas", paper="Zhou et al. 2020, PLAS: Latent Action Space for Offline Reinforcement Learning")
class PLAS(Algorithm):
    Config = PLASConfig
    shared_trunk = True

    def __init__(self, observation_space, action_space, config: PLASConfig) -> None:
        super().__init__(observation_space, action_space, config)
        width = self.encoder.out_dim
        latent = config.latent_dim or 2 * self.action_dim
        self.vae = ConditionalVAE(width, self.action_dim, config.vae_hidden_dims, latent)
        self.actor = MLP(width, config.hidden_dims, latent, output_activation="tanh")
        self.critic = QEnsemble(width, self.action_dim, config.hidden_dims, ensemble_size=config.num_critics)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.optimizers = {
            # the VAE's loss trains the image trunk, when there is one
            "vae": adam([*self.vae.parameters(), *self.encoder.parameters()], config.vae_lr),
            "actor": adam(self.actor.parameters(), config.actor_lr),
            "critic": adam(self.critic.parameters(), config.critic_lr),
        }
        self._targets = [parameter_lists(self.actor_target, self.actor), parameter_lists(self.critic_target, self.critic)]

    def policy(self, actor, features: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(features, self.config.max_latent * actor(features))

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        actions = self.action_scaler.normalize(batch.actions)
        self.num_updates += 1
        if self.num_updates <= cfg.vae_pretrain_steps:
            loss, metrics = vae_loss(self.vae, self.encoder(batch.observations), actions, cfg.kl_weight)
            step(self.optimizers["vae"], loss)
            return metrics
        if self.vae.decoder[0].weight.requires_grad:
            self.vae.requires_grad_(False)  # the behaviour model is fixed from here on,
            self.encoder.requires_grad_(False)  # and the image trunk it learned with it: the decoder reads its features
        features = self.encoder(batch.observations)

        with torch.no_grad():
            next_features = self.encoder(batch.next_observations)
            next_q = soft_clipped_q(self.critic_target(next_features, self.policy(self.actor_target, next_features)), cfg.lmbda)
            targets = td_target(batch.rewards, batch.terminals, cfg.discount, next_q)
        loss, critic_metrics = critic_loss(self.critic, features, actions, targets)
        step(self.optimizers["critic"], loss)

        actor_loss = -self.critic(features, self.policy(self.actor, features), members=slice(0, 1), frozen=True).mean()
        step(self.optimizers["actor"], actor_loss)
        for target, online in self._targets:
            soft_update(target, online, cfg.tau)
        return {**critic_metrics, "actor_loss": actor_loss.detach()}

    @torch.no_grad()
    def act(self, observations, deterministic: bool = True) -> torch.Tensor:
        return self.action_scaler.denormalize(self.policy(self.actor, self.encoder(observations)))
