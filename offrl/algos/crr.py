"""Critic Regularized Regression: behaviour cloning filtered by the critic's advantage.

Wang et al. 2020, "Critic Regularized Regression". The actor maximizes
``f(A(s, a)) log pi(a | s)`` on dataset actions, with ``A = Q(s, a) -
mean_j Q(s, a_j)`` (or ``max_j``) over ``a_j ~ pi``, and ``f`` the binary
filter ``1[A > 0]`` or the exponential ``min(exp(A / beta), 20)``. As in
d3rlpy, the critic is a standard (not distributional) Q-function and its
target network is copied every 100 steps.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Literal

import torch

from offrl.algos.base import Algorithm
from offrl.algos.common import adam, advantage_weights, critic_loss, parameter_lists, policy_td_targets, soft_update, step
from offrl.algos.registry import register
from offrl.data.batch import Batch
from offrl.nn.critics import QEnsemble
from offrl.nn.encoders import EncoderConfig
from offrl.nn.heads import GaussianPolicy, gaussian_log_prob


@dataclasses.dataclass
class CRRConfig(EncoderConfig):
    discount: float = 0.99  # reward discount
    beta: float = 1.0  # temperature of the exponential filter
    advantage_type: Literal["mean", "max"] = "mean"  # baseline over sampled policy actions
    weight_type: Literal["exp", "binary"] = "exp"  # CRR's two filters
    max_weight: float = 20.0  # clip of the exponential filter
    num_sampled_actions: int = 4  # policy actions for the baseline
    actor_lr: float = 3e-4  # actor Adam learning rate
    critic_lr: float = 3e-4  # critic Adam learning rate
    target_update: Literal["hard", "soft"] = "hard"  # copy the critic every target_update_interval, or Polyak
    target_update_interval: int = 100  # steps between hard copies
    tau: float = 0.005  # Polyak rate for soft updates
    hidden_dims: tuple[int, ...] = (256, 256)  # actor and critic widths
    activation: str = "relu"  # hidden-layer activation
    num_critics: int = 1  # critics (the minimum is used)
    batch_size: int = 100  # transitions per gradient step
    normalize_observations: bool = False  # standardize states with dataset statistics


def filtered_regression(actor, critic, features, actions, cfg: CRRConfig) -> tuple[torch.Tensor, dict]:
    distribution = actor(features)  # one actor pass: the baseline's samples and the data actions' log-density
    with torch.no_grad():
        sampled = actor.draw(distribution, samples=cfg.num_sampled_actions)
        # the data action and the K sampled ones through the critics in one pass: [B, 1 + K]
        q_all = critic(features, torch.cat([actions.unsqueeze(1), sampled], dim=1)).min(dim=0).values
        q, q_sampled = q_all[:, 0], q_all[:, 1:]
        baseline = q_sampled.mean(dim=1) if cfg.advantage_type == "mean" else q_sampled.max(dim=1).values
        advantage = q - baseline
        if cfg.weight_type == "binary":
            weights = (advantage > 0).float()
        else:
            weights = advantage_weights(advantage, 1.0 / cfg.beta, cfg.max_weight)
    loss = -(weights * gaussian_log_prob(*distribution, actions)).mean()
    return loss, {"actor_loss": loss.detach(), "weight_mean": weights.mean(), "advantage_mean": advantage.mean()}


@register("crr", paper="Wang et al. 2020, Critic Regularized Regression")
class CRR(Algorithm):
    Config = CRRConfig
    shared_trunk = True

    def __init__(self, observation_space, action_space, config: CRRConfig) -> None:
        super().__init__(observation_space, action_space, config)
        width = self.encoder.out_dim
        options = {"activation_name": config.activation}
        self.actor = GaussianPolicy(width, self.action_dim, config.hidden_dims, state_dependent_std=True, **options)
        self.critic = QEnsemble(width, self.action_dim, config.hidden_dims, ensemble_size=config.num_critics, **options)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.optimizers = {
            "actor": adam(self.actor.parameters(), config.actor_lr),
            # the critic's loss trains the image trunk, when there is one
            "critic": adam([*self.critic.parameters(), *self.encoder.parameters()], config.critic_lr),
        }
        self._critic_target = parameter_lists(self.critic_target, self.critic)

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        features = self.encoder(batch.observations)
        actions = self.action_scaler.normalize(batch.actions)
        with torch.no_grad():
            targets = policy_td_targets(self.critic_target, self.actor, self.encoder(batch.next_observations), batch, cfg.discount)
        loss, critic_metrics = critic_loss(self.critic, features, actions, targets)
        step(self.optimizers["critic"], loss)

        loss, metrics = filtered_regression(self.actor, self.critic, features.detach(), actions, cfg)
        step(self.optimizers["actor"], loss)
        self.num_updates += 1
        if cfg.target_update == "soft":
            soft_update(*self._critic_target, cfg.tau)
        elif self.num_updates % cfg.target_update_interval == 0:
            soft_update(*self._critic_target, 1.0)
        metrics.update(critic_metrics)
        return metrics

    @torch.no_grad()
    def act(self, observations, deterministic: bool = True) -> torch.Tensor:
        features = self.encoder(observations)
        actions = self.actor.deterministic(features) if deterministic else self.actor.sample(features)
        return self.action_scaler.denormalize(actions)
