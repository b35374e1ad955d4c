"""Discrete IQL: expectile regression of V on Q, advantage-weighted categorical policy.

Kostrikov, Nair & Levine 2021, "Offline Reinforcement Learning with Implicit
Q-Learning", with ``Q(s, .)`` for all actions in one pass and a categorical
actor. Defaults are the paper's (expectile 0.7, inverse temperature 3,
weights clipped at 100, Polyak 0.005); the learning rates are constant.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from offrl.algos.base import Algorithm
from offrl.algos.common import adam, advantage_weights, expectile_loss, parameter_lists, soft_update, step, td_target
from offrl.algos.discrete_crr import actor_and_critic, ensemble_td_loss, members_chosen, weighted_log_likelihood
from offrl.algos.dqn import head_widths
from offrl.algos.registry import register
from offrl.data.batch import Batch
from offrl.nn.critics import ValueNetwork
from offrl.nn.encoders import EncoderConfig, make_trunk


@dataclasses.dataclass
class DiscreteIQLConfig(EncoderConfig):
    expectile: float = 0.7  # tau of the expectile loss for V
    temperature: float = 3.0  # inverse temperature beta of the advantage weights
    max_weight: float = 100.0  # clip of exp(beta * A)
    discount: float = 0.99  # reward discount
    tau: float = 0.005  # target Q Polyak rate
    actor_lr: float = 3e-4  # policy Adam learning rate
    critic_lr: float = 3e-4  # Q Adam learning rate
    value_lr: float = 3e-4  # V Adam learning rate
    num_critics: int = 2  # Q ensemble size; V regresses the minimum of the targets
    batch_size: int = 256  # transitions per gradient step
    hidden_dims: tuple[int, ...] | None = None  # MLP widths after the trunk; None: (256, 256) for vectors, () for images
    activation: str = "relu"  # hidden-layer activation
    normalize_observations: bool = True  # standardize vector observations with dataset statistics


@register("discrete_iql", paper="Kostrikov et al. 2021, IQL (discrete actions)", action_type="discrete")
class DiscreteIQL(Algorithm):
    Config = DiscreteIQLConfig

    def __init__(self, observation_space, action_space, config: DiscreteIQLConfig) -> None:
        super().__init__(observation_space, action_space, config)
        self.actor, self.critic = actor_and_critic(self.encoder, action_space, config)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        trunk = make_trunk(self.encoder, config)
        widths = head_widths(config, self.encoder)
        self.value = nn.Sequential(trunk, ValueNetwork(trunk.out_dim, widths, activation_name=config.activation))
        self.optimizers = {
            "actor": adam(self.actor.parameters(), config.actor_lr),
            "critic": adam(self.critic.parameters(), config.critic_lr),
            "value": adam(self.value.parameters(), config.value_lr),
        }
        self._target_pairs = parameter_lists(self.critic_target, self.critic)

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        observations = self.encoder(batch.observations)
        next_observations = self.encoder(batch.next_observations)
        with torch.no_grad():
            target_q = members_chosen(self.critic_target(observations), batch.actions).min(dim=0).values
        values = self.value(observations)
        value_loss = expectile_loss(target_q - values, cfg.expectile)
        step(self.optimizers["value"], value_loss)

        with torch.no_grad():
            targets = td_target(batch.rewards, batch.terminals, cfg.discount, self.value(next_observations))
        critic_loss, metrics = ensemble_td_loss(self.critic(observations), batch.actions, targets)
        step(self.optimizers["critic"], critic_loss)

        weights = advantage_weights(target_q - values.detach(), cfg.temperature, cfg.max_weight)
        actor_loss = weighted_log_likelihood(self.actor(observations), batch.actions, weights)
        step(self.optimizers["actor"], actor_loss)
        soft_update(*self._target_pairs, cfg.tau)
        self.num_updates += 1
        return {**metrics, "value_loss": value_loss.detach(), "actor_loss": actor_loss.detach(), "v_mean": values.detach().mean()}

    @torch.no_grad()
    def act(self, observations, deterministic: bool = True) -> torch.Tensor:
        return self.actor.act(self.encoder(observations), deterministic)
