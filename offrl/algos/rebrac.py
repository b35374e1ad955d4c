"""ReBRAC: TD3+BC revisited, with behaviour cloning in the actor and the critic, decoupled.

Tarasov, Kurenkov, Nikulin & Kolesnikov 2023, "Revisiting the Minimalist
Approach to Offline Reinforcement Learning". Versus TD3+BC: a penalty
``critic_bc_coef * ||a' - a'_data||^2`` on the target's next action (the
dataset's next action ``a'_data``), an actor penalty ``actor_bc_coef *
||pi(s) - a||^2`` with Q normalized by mean |Q|, LayerNorm critics, three
hidden layers, batch 1024, learning rates 1e-3, EDAC's initialization.
Both coefficients are tuned per dataset in the paper (e.g. hopper-medium
0.01 / 0.01, halfcheetah-medium 0.001 / 0.01, walker2d-medium-replay
0.05 / 0.01, hopper-medium-expert 0.1 / 0.01); the defaults are its base
config.
"""

from __future__ import annotations

import copy
import dataclasses

import torch

from offrl.algos.base import Algorithm
from offrl.algos.common import adam, critic_loss, parameter_lists, soft_update, step, td_target
from offrl.algos.registry import register
from offrl.algos.td3 import smoothed_target_actions
from offrl.data.batch import Batch
from offrl.nn.critics import QEnsemble
from offrl.nn.encoders import EncoderConfig
from offrl.nn.heads import DeterministicPolicy


@dataclasses.dataclass
class ReBRACConfig(EncoderConfig):
    actor_bc_coef: float = 1.0  # beta_1: weight of the actor's behaviour-cloning penalty
    critic_bc_coef: float = 1.0  # beta_2: weight of the penalty on the target's next action
    discount: float = 0.99  # reward discount
    tau: float = 0.005  # target-network Polyak rate
    policy_noise: float = 0.2  # std of target-policy smoothing noise
    noise_clip: float = 0.5  # clip of that noise
    policy_freq: int = 2  # actor and target updates every this many critic updates
    exploration_noise: float = 0.1  # std of Gaussian noise on actions collected online
    actor_lr: float = 1e-3  # actor Adam learning rate
    critic_lr: float = 1e-3  # critic Adam learning rate
    hidden_dims: tuple[int, ...] = (256, 256, 256)  # actor and critic widths
    actor_layer_norm: bool = False  # LayerNorm in the actor
    critic_layer_norm: bool = True  # LayerNorm in the critics
    num_critics: int = 2  # critic ensemble; the minimum is used for targets and the actor
    normalize_q: bool = True  # divide the actor's Q term by mean |Q|
    batch_size: int = 1024  # transitions per gradient step
    normalize_observations: bool = False  # ReBRAC trains on raw states


def critic_targets(cfg: ReBRACConfig, actor_target, critic_target, next_features, actions, data_next_actions, batch: Batch):
    next_actions = smoothed_target_actions(actor_target, next_features, actions, cfg.policy_noise, cfg.noise_clip)
    penalty = (next_actions - data_next_actions).pow(2).sum(-1)
    penalty = torch.nan_to_num(penalty, nan=0.0)  # online rows have no recorded next action
    next_q = critic_target(next_features, next_actions).min(dim=0).values - cfg.critic_bc_coef * penalty
    return td_target(batch.rewards, batch.terminals, cfg.discount, next_q)


def actor_loss(cfg: ReBRACConfig, actor, critic, features, actions) -> tuple[torch.Tensor, dict]:
    policy_actions = actor(features)
    bc = (policy_actions - actions).pow(2).sum(-1)
    q = critic(features, policy_actions, frozen=True).min(dim=0).values
    lmbda = 1.0 / q.abs().mean().detach() if cfg.normalize_q else 1.0
    loss = (cfg.actor_bc_coef * bc - lmbda * q).mean()
    return loss, {"actor_loss": loss.detach(), "bc_mse": bc.detach().mean()}


@register("rebrac", paper="Tarasov et al. 2023, Revisiting the Minimalist Approach to Offline Reinforcement Learning")
class ReBRAC(Algorithm):
    Config = ReBRACConfig
    shared_trunk = True

    def __init__(self, observation_space, action_space, config: ReBRACConfig) -> None:
        super().__init__(observation_space, action_space, config)
        width = self.encoder.out_dim
        self.actor = DeterministicPolicy(
            width, self.action_dim, config.hidden_dims, layer_norm=config.actor_layer_norm, init="edac", last_layer_scale=1e-3
        )
        self.critic = QEnsemble(
            width,
            self.action_dim,
            config.hidden_dims,
            ensemble_size=config.num_critics,
            layer_norm=config.critic_layer_norm,
            init="edac",
            last_layer_scale=3e-3,
        )
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.optimizers = {
            "actor": adam(self.actor.parameters(), config.actor_lr),
            # the critic's loss trains the image trunk, when there is one
            "critic": adam([*self.critic.parameters(), *self.encoder.parameters()], config.critic_lr),
        }
        self._targets = [parameter_lists(self.actor_target, self.actor), parameter_lists(self.critic_target, self.critic)]

    def dataset_columns(self) -> dict:
        return {"next_actions": True}

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        features = self.encoder(batch.observations)
        actions = self.action_scaler.normalize(batch.actions)
        with torch.no_grad():
            next_features = self.encoder(batch.next_observations)
            data_next_actions = (batch.next_actions - self.action_scaler.center) / self.action_scaler.half_range
            targets = critic_targets(cfg, self.actor_target, self.critic_target, next_features, actions, data_next_actions, batch)
        loss, critic_metrics = critic_loss(self.critic, features, actions, targets)
        step(self.optimizers["critic"], loss)
        metrics = critic_metrics

        self.num_updates += 1
        if self.num_updates % cfg.policy_freq == 0:
            loss, actor_metrics = actor_loss(cfg, self.actor, self.critic, features.detach(), actions)
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
