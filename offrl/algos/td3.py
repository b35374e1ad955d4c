"""TD3: twin critics, target-policy smoothing, delayed actor updates; with ``alpha`` set, TD3+BC.

Fujimoto, van Hoof & Meger 2018, "Addressing Function Approximation Error in
Actor-Critic Methods". The behaviour-cloning actor term of TD3+BC (Fujimoto &
Gu 2021) is the ``alpha`` option: ``-alpha / mean|Q| * Q(s, pi(s)) + (pi(s) - a)^2``.
``td3_bc.py`` registers that configuration under its own name.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
import torch.nn.functional as F

from offrl.algos.base import Algorithm
from offrl.algos.common import adam, critic_loss, parameter_lists, soft_update, step, td_target
from offrl.algos.registry import register
from offrl.data.batch import Batch
from offrl.nn.critics import QEnsemble
from offrl.nn.encoders import EncoderConfig
from offrl.nn.heads import DeterministicPolicy


@dataclasses.dataclass
class TD3Config(EncoderConfig):
    discount: float = 0.99  # reward discount
    tau: float = 0.005  # target-network Polyak rate
    policy_noise: float = 0.2  # std of target-policy smoothing noise (normalized actions)
    noise_clip: float = 0.5  # clip of that noise
    policy_freq: int = 2  # actor and target updates every this many critic updates
    exploration_noise: float = 0.1  # std of the Gaussian noise on actions collected online
    actor_lr: float = 3e-4  # actor Adam learning rate
    critic_lr: float = 3e-4  # critic Adam learning rate
    hidden_dims: tuple[int, ...] = (256, 256)  # actor and critic MLP widths
    activation: str = "relu"  # hidden-layer activation
    num_critics: int = 2  # twin critics; the minimum forms the target
    critic_layer_norm: bool = False  # LayerNorm in the critics (RLPD)
    alpha: float = 0.0  # TD3+BC: weight of Q against BC (0: plain TD3 actor loss)
    batch_size: int = 256  # transitions per gradient step
    normalize_observations: bool = False  # standardize states with dataset mean/std (+1e-3)


def smoothed_target_actions(actor_target, next_features, actions_like, noise: float, clip: float) -> torch.Tensor:
    """TD3's target-policy smoothing: target action plus clipped Gaussian noise."""
    eps = (torch.randn_like(actions_like) * noise).clamp(-clip, clip)
    return (actor_target(next_features) + eps).clamp(-1.0, 1.0)


def actor_loss(actor, critic: QEnsemble, features, actions, alpha: float) -> tuple[torch.Tensor, dict]:
    policy_actions = actor(features)
    q = critic(features, policy_actions, members=slice(0, 1), frozen=True)[0]  # Q1 only, as the papers
    if alpha <= 0:
        loss = -q.mean()
        return loss, {"actor_loss": loss.detach()}
    lmbda = alpha / q.abs().mean().detach()
    bc = F.mse_loss(policy_actions, actions)
    loss = -lmbda * q.mean() + bc
    return loss, {"actor_loss": loss.detach(), "bc_loss": bc.detach(), "lambda": lmbda}


@register("td3", paper="Fujimoto et al. 2018, Addressing Function Approximation Error in Actor-Critic Methods", online=True)
class TD3(Algorithm):
    Config = TD3Config
    shared_trunk = True

    def __init__(self, observation_space, action_space, config: TD3Config) -> None:
        super().__init__(observation_space, action_space, config)
        width = self.encoder.out_dim
        self.actor = DeterministicPolicy(width, self.action_dim, config.hidden_dims, activation_name=config.activation)
        self.critic = QEnsemble(
            width,
            self.action_dim,
            config.hidden_dims,
            ensemble_size=config.num_critics,
            layer_norm=config.critic_layer_norm,
            activation_name=config.activation,
        )
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.optimizers = {
            "actor": adam(self.actor.parameters(), config.actor_lr),
            # the critic's loss trains the image trunk, when there is one
            "critic": adam([*self.critic.parameters(), *self.encoder.parameters()], config.critic_lr),
        }
        self._targets = [parameter_lists(self.actor_target, self.actor), parameter_lists(self.critic_target, self.critic)]

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        features = self.encoder(batch.observations)
        actions = self.action_scaler.normalize(batch.actions)
        with torch.no_grad():
            next_features = self.encoder(batch.next_observations)
            next_actions = smoothed_target_actions(self.actor_target, next_features, actions, cfg.policy_noise, cfg.noise_clip)
            next_q = self.critic_target(next_features, next_actions).min(dim=0).values
            targets = td_target(batch.rewards, batch.terminals, cfg.discount, next_q)
        loss, metrics = critic_loss(self.critic, features, actions, targets)
        step(self.optimizers["critic"], loss)

        self.num_updates += 1
        if self.num_updates % cfg.policy_freq == 0:
            loss, actor_metrics = actor_loss(self.actor, self.critic, features.detach(), actions, cfg.alpha)
            step(self.optimizers["actor"], loss)
            metrics.update(actor_metrics)
            for target, online in self._targets:
                soft_update(target, online, cfg.tau)
        return metrics

    @torch.no_grad()
    def act(self, observations, deterministic: bool = True) -> torch.Tensor:
        actions = self.actor(self.encoder(observations))
        if not deterministic:
            actions = (actions + torch.randn_like(actions) * self.config.exploration_noise).clamp(-1.0, 1.0)
        return self.action_scaler.denormalize(actions)
