"""Discrete CRR: a categorical policy fit to the dataset's actions, weighted by the critic's advantage.

Wang et al. 2020, "Critic Regularized Regression". With discrete actions the
policy's expectations are exact sums over the actions: the advantage is
``Q(s, a) - sum_a' pi(a'|s) Q(s, a')`` and the critic's target bootstraps from
``sum_a' pi(a'|s') Q_target(s', a')``. Defaults as d3rlpy's CRR (exp weights,
beta 1, weights clipped at 20, soft target updates).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from offrl.algos.base import Algorithm
from offrl.algos.common import adam, advantage_weights, parameter_lists, soft_update, step, td_target
from offrl.algos.dqn import chosen, head_widths
from offrl.algos.registry import register
from offrl.data.batch import Batch
from offrl.nn.critics import DiscreteQNetwork
from offrl.nn.encoders import EncoderConfig, make_trunk
from offrl.nn.heads import CategoricalPolicy


@dataclasses.dataclass
class DiscreteCRRConfig(EncoderConfig):
    beta: float = 1.0  # temperature: weights exp(A / beta)
    advantage_weight: Literal["exp", "binary"] = "exp"  # exp(A / beta) clipped, or 1[A > 0]
    max_weight: float = 20.0  # clip of the exp weights
    discount: float = 0.99  # reward discount
    actor_lr: float = 3e-4  # policy Adam learning rate
    critic_lr: float = 3e-4  # Q Adam learning rate
    tau: float = 5e-3  # target Q Polyak rate
    num_critics: int = 2  # Q ensemble size; the minimum is used for targets and advantages
    batch_size: int = 256  # transitions per gradient step
    hidden_dims: tuple[int, ...] | None = None  # MLP widths after the trunk; None: (256, 256) for vectors, () for images
    activation: str = "relu"  # hidden-layer activation
    normalize_observations: bool = True  # standardize vector observations with dataset statistics


def actor_and_critic(encoder: nn.Module, action_space, config) -> tuple[CategoricalPolicy, DiscreteQNetwork]:
    """A categorical policy and a ``num_critics`` Q ensemble, each on its own trunk (discrete CRR and IQL)."""
    n_actions, widths = int(action_space.n), head_widths(config, encoder)
    options = {"activation_name": config.activation}
    actor = CategoricalPolicy(make_trunk(encoder, config), n_actions, widths, **options)
    critic = DiscreteQNetwork(make_trunk(encoder, config), n_actions, widths, ensemble_size=config.num_critics, **options)
    return actor, critic


def members_chosen(values: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """``[E, B]`` values of the taken actions from ensemble values ``[E, B, n]``."""
    return chosen(values.permute(1, 2, 0), actions).T


def ensemble_td_loss(values: torch.Tensor, actions: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Each member's MSE to the targets, summed over the ensemble (as the continuous critics)."""
    q = members_chosen(values, actions)
    loss = (q - targets).pow(2).mean(dim=1).sum()
    return loss, {"critic_loss": loss.detach(), "q_mean": q.detach().mean()}


def weighted_log_likelihood(logits: torch.Tensor, actions: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return -(weights * chosen(F.log_softmax(logits, dim=-1), actions)).mean()


@register("discrete_crr", paper="Wang et al. 2020, CRR (discrete actions)", action_type="discrete")
class DiscreteCRR(Algorithm):
    Config = DiscreteCRRConfig

    def __init__(self, observation_space, action_space, config: DiscreteCRRConfig) -> None:
        super().__init__(observation_space, action_space, config)
        self.actor, self.critic = actor_and_critic(self.encoder, action_space, config)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.optimizers = {"actor": adam(self.actor.parameters(), config.actor_lr), "critic": adam(self.critic.parameters(), config.critic_lr)}
        self._target_pairs = parameter_lists(self.critic_target, self.critic)

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        observations = self.encoder(batch.observations)
        with torch.no_grad():
            next_observations = self.encoder(batch.next_observations)
            next_probs = F.softmax(self.actor(next_observations), dim=-1)
            next_values = (next_probs * self.critic_target(next_observations).min(dim=0).values).sum(-1)
            targets = td_target(batch.rewards, batch.terminals, cfg.discount, next_values)
        values = self.critic(observations)
        critic_loss, metrics = ensemble_td_loss(values, batch.actions, targets)
        step(self.optimizers["critic"], critic_loss)

        logits = self.actor(observations)
        with torch.no_grad():
            q = values.detach().min(dim=0).values  # [B, n]
            advantages = chosen(q, batch.actions) - (F.softmax(logits, dim=-1) * q).sum(-1)
            if cfg.advantage_weight == "binary":
                weights = (advantages > 0).float()
            else:
                weights = advantage_weights(advantages, 1.0 / cfg.beta, cfg.max_weight)
        actor_loss = weighted_log_likelihood(logits, batch.actions, weights)
        step(self.optimizers["actor"], actor_loss)
        soft_update(*self._target_pairs, cfg.tau)
        self.num_updates += 1
        return {**metrics, "actor_loss": actor_loss.detach(), "advantage": advantages.mean()}

    @torch.no_grad()
    def act(self, observations, deterministic: bool = True) -> torch.Tensor:
        return self.actor.act(self.encoder(observations), deterministic)
