"""Soft Actor-Critic with automatic entropy tuning, RLPD's critic options, and SAC-N / EDAC.

Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications"
(learned temperature, target entropy -|A|). Ball et al. 2023 (RLPD) run
the same update with a LayerNorm critic ensemble (``num_critics=10``,
``critic_layer_norm=True``), the target taken as the minimum over a random
subset of two critics (``num_target_critics=2``) and the actor maximizing
the mean over critics (``actor_q_reduction="mean"``). An et al. 2021 run it
offline with a large ensemble (SAC-N, ``sac_n.py``) and add a penalty on
the similarity of the critics' action-gradients (EDAC, ``eta > 0``,
``edac.py``).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from offrl.algos.base import Algorithm
from offrl.algos.common import adam, critic_loss, parameter_lists, soft_update, step, td_target
from offrl.algos.registry import register
from offrl.data.batch import Batch
from offrl.nn.critics import QEnsemble
from offrl.nn.encoders import EncoderConfig
from offrl.nn.heads import TanhGaussianPolicy


@dataclasses.dataclass
class SACConfig(EncoderConfig):
    discount: float = 0.99  # reward discount
    tau: float = 0.005  # target-critic Polyak rate
    actor_lr: float = 3e-4  # actor Adam learning rate
    critic_lr: float = 3e-4  # critic Adam learning rate
    alpha_lr: float = 3e-4  # temperature Adam learning rate
    init_alpha: float = 1.0  # initial entropy temperature
    target_entropy: float | None = None  # None: -action_dim
    learn_alpha: bool = True  # tune the temperature to reach the target entropy
    hidden_dims: tuple[int, ...] = (256, 256)  # actor and critic MLP widths
    activation: str = "relu"  # hidden-layer activation
    num_critics: int = 2  # critic ensemble size (RLPD: 10)
    num_target_critics: int | None = None  # min over a random subset of this many target critics (RLPD: 2); None: all
    critic_layer_norm: bool = False  # LayerNorm after each critic hidden layer (RLPD: True)
    actor_q_reduction: Literal["min", "mean"] = "min"  # how the actor reduces the critics (RLPD: mean)
    backup_entropy: bool = True  # include the entropy bonus in the TD target
    eta: float = 0.0  # EDAC: weight of the ensemble gradient-diversity penalty (0: plain SAC)
    init: Literal["default", "edac"] = "default"  # "edac": hidden biases 0.1, small uniform output layers (An et al.)
    batch_size: int = 256  # transitions per gradient step
    normalize_observations: bool = False  # standardize states with dataset statistics (when a dataset is given)


def gradient_diversity(critic: QEnsemble, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """EDAC's penalty: mean pairwise cosine similarity of the members' gradients dQ_e/da at the data actions."""
    members = critic.ensemble_size
    member_features = features.unsqueeze(0).expand(members, *features.shape)
    member_actions = actions.detach().unsqueeze(0).repeat(members, 1, 1).requires_grad_(True)
    q = critic(member_features, member_actions)
    grads = torch.autograd.grad(q.sum(), member_actions, create_graph=True)[0]  # [E, B, A]
    grads = grads / (grads.norm(dim=-1, keepdim=True) + 1e-10)
    grads = grads.transpose(0, 1)  # [B, E, A]
    similarity = grads @ grads.transpose(1, 2)  # [B, E, E]
    off_diagonal = 1.0 - torch.eye(members, device=grads.device)
    return (similarity * off_diagonal).sum(dim=(1, 2)).mean() / (members - 1)


def actor_loss(actor: TanhGaussianPolicy, critic: QEnsemble, features, alpha: torch.Tensor, reduction: str):
    actions, log_prob = actor.sample(features)
    q = critic(features, actions, frozen=True)
    q = q.min(dim=0).values if reduction == "min" else q.mean(dim=0)
    loss = (alpha * log_prob - q).mean()
    return loss, log_prob.detach(), {"actor_loss": loss.detach(), "entropy": -log_prob.detach().mean()}


def alpha_loss(log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float) -> tuple[torch.Tensor, dict]:
    loss = -(log_alpha * (log_prob + target_entropy)).mean()
    return loss, {"alpha_loss": loss.detach(), "alpha": log_alpha.detach().exp()}


@register("sac", paper="Haarnoja et al. 2018, Soft Actor-Critic Algorithms and Applications", online=True)
class SAC(Algorithm):
    Config = SACConfig
    shared_trunk = True

    def __init__(self, observation_space, action_space, config: SACConfig) -> None:
        super().__init__(observation_space, action_space, config)
        width = self.encoder.out_dim
        edac_init = config.init == "edac"
        self.actor = TanhGaussianPolicy(
            width,
            self.action_dim,
            config.hidden_dims,
            activation_name=config.activation,
            init=config.init,
            last_layer_scale=1e-3 if edac_init else None,
        )
        self.critic = QEnsemble(
            width,
            self.action_dim,
            config.hidden_dims,
            ensemble_size=config.num_critics,
            layer_norm=config.critic_layer_norm,
            activation_name=config.activation,
            init=config.init,
            last_layer_scale=3e-3 if edac_init else None,
        )
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(config.init_alpha)))
        self.target_entropy = -float(self.action_dim) if config.target_entropy is None else config.target_entropy
        self.optimizers = {
            "actor": adam(self.actor.parameters(), config.actor_lr),
            # the critic's loss trains the image trunk, when there is one
            "critic": adam([*self.critic.parameters(), *self.encoder.parameters()], config.critic_lr),
        }
        if config.learn_alpha:
            self.optimizers["alpha"] = adam([self.log_alpha], config.alpha_lr)
        self._critic_target = parameter_lists(self.critic_target, self.critic)

    def critic_step(self, features: torch.Tensor, actions: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        with torch.no_grad():
            next_features = self.encoder(batch.next_observations)
            next_actions, next_log_prob = self.actor.sample(next_features)
            if cfg.num_target_critics is None or cfg.num_target_critics >= cfg.num_critics:
                next_q = self.critic_target(next_features, next_actions).min(dim=0).values
            else:
                chosen = torch.randperm(cfg.num_critics, device=features.device)[: cfg.num_target_critics]
                next_q = self.critic_target(next_features, next_actions)[chosen].min(dim=0).values
            if cfg.backup_entropy:
                next_q = next_q - self.log_alpha.exp() * next_log_prob
            targets = td_target(batch.rewards, batch.terminals, cfg.discount, next_q)
        loss, metrics = critic_loss(self.critic, features, actions, targets)
        if cfg.eta > 0:
            diversity = gradient_diversity(self.critic, features, actions)
            loss = loss + cfg.eta * diversity
            metrics["gradient_diversity"] = diversity.detach()
        step(self.optimizers["critic"], loss)
        soft_update(*self._critic_target, cfg.tau)
        return metrics

    def actor_step(
        self, features: torch.Tensor, extra_loss: Callable[[], tuple[torch.Tensor, dict]] | None = None
    ) -> dict[str, torch.Tensor]:
        """Actor (and temperature) step; ``extra_loss`` adds a term to the actor loss (e.g. behaviour cloning)."""
        alpha = self.log_alpha.exp().detach()
        loss, log_prob, metrics = actor_loss(self.actor, self.critic, features, alpha, self.config.actor_q_reduction)
        if extra_loss is not None:
            extra, extra_metrics = extra_loss()
            loss = loss + extra
            metrics.update(extra_metrics)
        step(self.optimizers["actor"], loss)
        if self.config.learn_alpha:
            loss, alpha_metrics = alpha_loss(self.log_alpha, log_prob, self.target_entropy)
            step(self.optimizers["alpha"], loss)
            metrics.update(alpha_metrics)
        return metrics

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        features = self.encoder(batch.observations)
        actions = self.action_scaler.normalize(batch.actions)
        metrics = self.critic_step(features, actions, batch)
        metrics.update(self.actor_step(features.detach()))
        self.num_updates += 1
        return metrics

    @torch.no_grad()
    def act(self, observations, deterministic: bool = True) -> torch.Tensor:
        features = self.encoder(observations)
        actions = self.actor.deterministic(features) if deterministic else self.actor.sample(features)[0]
        return self.action_scaler.denormalize(actions)
