"""Implicit Q-Learning: expectile regression of V on Q, advantage-weighted actor.

Kostrikov, Nair & Levine 2021, "Offline Reinforcement Learning with
Implicit Q-Learning". Defaults are the paper's locomotion settings:
expectile 0.7, inverse temperature 3.0, rewards scaled by 1000 / (max
return - min return), actor learning rate cosine-decayed over training.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Literal

import torch

from offrl.algos.base import Algorithm
from offrl.algos.common import (
    adam,
    advantage_weights,
    cosine_lr,
    critic_loss,
    evaluating,
    expectile_loss,
    parameter_lists,
    set_lr,
    soft_update,
    step,
    td_target,
)
from offrl.algos.registry import register
from offrl.data.batch import Batch
from offrl.nn.critics import QEnsemble, ValueNetwork
from offrl.nn.encoders import EncoderConfig
from offrl.nn.heads import DeterministicPolicy, GaussianPolicy


@dataclasses.dataclass
class IQLConfig(EncoderConfig):
    expectile: float = 0.7  # tau of the expectile loss for V (0.9 for AntMaze)
    temperature: float = 3.0  # inverse temperature beta of the advantage weights (10 for AntMaze)
    discount: float = 0.99  # reward discount
    tau: float = 0.005  # target Q Polyak rate
    actor_lr: float = 3e-4  # actor Adam learning rate (cosine-decayed)
    critic_lr: float = 3e-4  # Q Adam learning rate
    value_lr: float = 3e-4  # V Adam learning rate
    hidden_dims: tuple[int, ...] = (256, 256)  # actor, Q and V MLP widths
    activation: str = "relu"  # hidden-layer activation
    num_critics: int = 2  # Q ensemble size; the minimum of the targets is regressed by V
    max_weight: float = 100.0  # clip of exp(beta * A)
    actor_dropout: float = 0.0  # dropout in the actor (0.1 for Adroit / Kitchen)
    deterministic_actor: bool = False  # weighted MSE instead of the Gaussian log-likelihood
    actor_lr_schedule: Literal["cosine", "constant"] = "cosine"  # cosine decay over the planned steps
    batch_size: int = 256  # transitions per gradient step
    normalize_observations: bool = True  # standardize states with dataset mean/std (CORL's setting)
    reward_normalization: Literal["none", "returns_range"] = "returns_range"  # locomotion: r * scale / (max R - min R)
    reward_scale: float = 1000.0  # the scale in that normalization


def value_loss(
    value: ValueNetwork, target_critic: QEnsemble, features: torch.Tensor, actions: torch.Tensor, expectile: float
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    with torch.no_grad():
        q = target_critic(features, actions).min(dim=0).values
    advantages = q - value(features)
    loss = expectile_loss(advantages, expectile)
    return loss, advantages.detach(), {"value_loss": loss.detach(), "advantage_mean": advantages.detach().mean()}


def actor_loss(actor, features: torch.Tensor, actions: torch.Tensor, weights: torch.Tensor, deterministic: bool):
    if deterministic:
        per_sample = (actor(features) - actions).pow(2).sum(-1)
    else:
        per_sample = -actor.log_prob(features, actions)
    loss = (weights * per_sample).mean()
    return loss, {"actor_loss": loss.detach(), "weight_mean": weights.mean()}


@register("iql", paper="Kostrikov et al. 2021, Offline Reinforcement Learning with Implicit Q-Learning")
class IQL(Algorithm):
    Config = IQLConfig
    shared_trunk = True

    def __init__(self, observation_space, action_space, config: IQLConfig) -> None:
        super().__init__(observation_space, action_space, config)
        width = self.encoder.out_dim
        options = {"activation_name": config.activation}
        if config.deterministic_actor:
            self.actor = DeterministicPolicy(width, self.action_dim, config.hidden_dims, dropout=config.actor_dropout, **options)
        else:
            self.actor = GaussianPolicy(
                width, self.action_dim, config.hidden_dims, state_dependent_std=False, dropout=config.actor_dropout, **options
            )
        self.critic = QEnsemble(width, self.action_dim, config.hidden_dims, ensemble_size=config.num_critics, **options)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.value = ValueNetwork(width, config.hidden_dims, **options)
        self.optimizers = {
            "actor": adam(self.actor.parameters(), config.actor_lr),
            # the critic's loss trains the image trunk, when there is one
            "critic": adam([*self.critic.parameters(), *self.encoder.parameters()], config.critic_lr),
            "value": adam(self.value.parameters(), config.value_lr),
        }
        self._critic_target = parameter_lists(self.critic_target, self.critic)

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        features = self.encoder(batch.observations)
        actions = self.action_scaler.normalize(batch.actions)

        loss, advantages, metrics = value_loss(self.value, self.critic_target, features.detach(), actions, cfg.expectile)
        step(self.optimizers["value"], loss)

        with torch.no_grad():
            next_values = self.value(self.encoder(batch.next_observations))
            targets = td_target(batch.rewards, batch.terminals, cfg.discount, next_values)
        loss, critic_metrics = critic_loss(self.critic, features, actions, targets)
        step(self.optimizers["critic"], loss)
        soft_update(*self._critic_target, cfg.tau)

        if cfg.actor_lr_schedule == "cosine":
            set_lr(self.optimizers["actor"], cosine_lr(cfg.actor_lr, self.num_updates, self.total_updates))
        weights = advantage_weights(advantages, cfg.temperature, cfg.max_weight)
        loss, actor_metrics = actor_loss(self.actor, features.detach(), actions, weights, cfg.deterministic_actor)
        step(self.optimizers["actor"], loss)

        self.num_updates += 1
        return {**metrics, **critic_metrics, **actor_metrics}

    @torch.no_grad()
    def act(self, observations, deterministic: bool = True) -> torch.Tensor:
        features = self.encoder(observations)
        with evaluating(self.actor):  # no actor dropout when acting
            if self.config.deterministic_actor:
                actions = self.actor(features)
            else:
                actions = self.actor(features)[0] if deterministic else self.actor.sample(features)
        return self.action_scaler.denormalize(actions)
