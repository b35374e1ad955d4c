"""Behaviour cloning: regress the dataset's actions.

Pomerleau 1991 (ALVINN); the deterministic MSE and the Gaussian
log-likelihood variants are the two policy options of d3rlpy's and
robomimic's BC.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
import torch.nn.functional as F

from offrl.algos.base import Algorithm
from offrl.algos.common import adam, step
from offrl.algos.registry import register
from offrl.data.batch import Batch
from offrl.nn.encoders import EncoderConfig
from offrl.nn.heads import DeterministicPolicy, GaussianPolicy


@dataclasses.dataclass
class BCConfig(EncoderConfig):
    policy: Literal["deterministic", "gaussian"] = "deterministic"  # MSE regression or Gaussian log-likelihood
    hidden_dims: tuple[int, ...] = (256, 256)  # actor MLP widths
    activation: str = "relu"  # hidden-layer activation
    lr: float = 1e-3  # Adam learning rate (d3rlpy's BC default)
    weight_decay: float = 0.0  # Adam L2 penalty
    batch_size: int = 256  # transitions per gradient step
    normalize_observations: bool = True  # standardize observations with dataset statistics
    log_std_min: float = -5.0  # Gaussian policy: lower clamp of the log standard deviation
    log_std_max: float = 2.0  # Gaussian policy: upper clamp of the log standard deviation


def mse_loss(policy: DeterministicPolicy, features: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, dict]:
    loss = F.mse_loss(policy(features), actions)
    return loss, {"bc_loss": loss.detach()}


def nll_loss(policy: GaussianPolicy, features: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, dict]:
    loss = -policy.log_prob(features, actions).mean()
    return loss, {"nll_loss": loss.detach()}


@register("bc", paper="Pomerleau 1991, behaviour cloning")
class BC(Algorithm):
    Config = BCConfig
    shared_trunk = True

    def __init__(self, observation_space, action_space, config: BCConfig) -> None:
        super().__init__(observation_space, action_space, config)
        options = {"activation_name": config.activation}
        if config.policy == "gaussian":
            self.actor = GaussianPolicy(
                self.encoder.out_dim,
                self.action_dim,
                config.hidden_dims,
                state_dependent_std=True,
                log_std_min=config.log_std_min,
                log_std_max=config.log_std_max,
                **options,
            )
        else:
            self.actor = DeterministicPolicy(self.encoder.out_dim, self.action_dim, config.hidden_dims, **options)
        self.optimizers = {"actor": adam([*self.actor.parameters(), *self.encoder.parameters()], config.lr, config.weight_decay)}

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        features = self.encoder(batch.observations)
        actions = self.action_scaler.normalize(batch.actions)
        loss_fn = nll_loss if self.config.policy == "gaussian" else mse_loss
        loss, metrics = loss_fn(self.actor, features, actions)
        step(self.optimizers["actor"], loss)
        self.num_updates += 1
        return metrics

    @torch.no_grad()
    def act(self, observations, deterministic: bool = True) -> torch.Tensor:
        features = self.encoder(observations)
        if self.config.policy == "gaussian":
            actions = self.actor(features)[0] if deterministic else self.actor.sample(features)
        else:
            actions = self.actor(features)
        return self.action_scaler.denormalize(actions)
