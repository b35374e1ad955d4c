"""AWAC: an actor-critic whose actor imitates the data weighted by exp(advantage / lambda).

Nair, Gupta, Dalal & Levine 2020, "AWAC: Accelerating Online Reinforcement
Learning with Offline Datasets", with CORL's locomotion settings: lambda 1,
weights clipped at 100, three hidden layers of 256, learning rates 3e-4, a
Gaussian actor with a state-independent standard deviation, states
standardized. The advantage baseline is Q(s, a ~ pi).
"""

from __future__ import annotations

import copy
import dataclasses

import torch

from offrl.algos.base import Algorithm
from offrl.algos.common import adam, advantage_weights, critic_loss, parameter_lists, policy_td_targets, soft_update, step
from offrl.algos.registry import register
from offrl.data.batch import Batch
from offrl.nn.critics import QEnsemble
from offrl.nn.encoders import EncoderConfig
from offrl.nn.heads import GaussianPolicy, gaussian_log_prob


@dataclasses.dataclass
class AWACConfig(EncoderConfig):
    discount: float = 0.99  # reward discount
    tau: float = 0.005  # target-critic Polyak rate
    awac_lambda: float = 1.0  # temperature: weights exp(A / lambda)
    max_weight: float = 100.0  # clip of the weights
    actor_lr: float = 3e-4  # actor Adam learning rate
    critic_lr: float = 3e-4  # critic Adam learning rate
    hidden_dims: tuple[int, ...] = (256, 256, 256)  # actor and critic widths
    activation: str = "relu"  # hidden-layer activation
    num_critics: int = 2  # twin critics; the minimum is used throughout
    batch_size: int = 256  # transitions per gradient step
    normalize_observations: bool = True  # standardize states with dataset statistics


def weighted_log_likelihood(actor, critic, features, actions, awac_lambda: float, max_weight: float):
    distribution = actor(features)  # one actor pass: the value's sample and the data actions' log-density
    with torch.no_grad():
        # Q at the data action and at one policy sample (the value's estimate) in one pass: [B, 2]
        both = critic(features, torch.stack([actions, actor.draw(distribution)], dim=1)).min(dim=0).values
        q, v = both[:, 0], both[:, 1]
        weights = advantage_weights(q - v, 1.0 / awac_lambda, max_weight)
    loss = -(weights * gaussian_log_prob(*distribution, actions)).mean()
    return loss, {"actor_loss": loss.detach(), "weight_mean": weights.mean(), "advantage_mean": (q - v).mean()}


@register("awac", paper="Nair et al. 2020, AWAC: Accelerating Online Reinforcement Learning with Offline Datasets")
class AWAC(Algorithm):
    Config = AWACConfig
    shared_trunk = True

    def __init__(self, observation_space, action_space, config: AWACConfig) -> None:
        super().__init__(observation_space, action_space, config)
        width = self.encoder.out_dim
        options = {"activation_name": config.activation}
        self.actor = GaussianPolicy(
            width, self.action_dim, config.hidden_dims, state_dependent_std=False, tanh_mean=False,
            log_std_min=-20.0, log_std_max=2.0, **options,
        )
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

        loss, metrics = weighted_log_likelihood(self.actor, self.critic, features.detach(), actions, cfg.awac_lambda, cfg.max_weight)
        step(self.optimizers["actor"], loss)
        soft_update(*self._critic_target, cfg.tau)
        self.num_updates += 1
        metrics.update(critic_metrics)
        return metrics

    @torch.no_grad()
    def act(self, observations, deterministic: bool = True) -> torch.Tensor:
        features = self.encoder(observations)
        actions = self.actor.deterministic(features) if deterministic else self.actor.sample(features)
        return self.action_scaler.denormalize(actions)
