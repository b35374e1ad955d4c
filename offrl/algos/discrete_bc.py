"""Discrete behaviour cloning: a categorical policy fit to the dataset's actions by cross-entropy.

With d3rlpy's DiscreteBC logit penalty (``beta * mean(logits^2)``), which keeps
the logits from growing without bound on deterministic data.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from offrl.algos.base import Algorithm
from offrl.algos.common import adam, step
from offrl.algos.dqn import head_widths
from offrl.algos.registry import register
from offrl.data.batch import Batch
from offrl.nn.encoders import EncoderConfig, make_trunk
from offrl.nn.heads import CategoricalPolicy


@dataclasses.dataclass
class DiscreteBCConfig(EncoderConfig):
    lr: float = 1e-3  # Adam learning rate (d3rlpy's DiscreteBC)
    batch_size: int = 100  # transitions per gradient step (d3rlpy's DiscreteBC)
    hidden_dims: tuple[int, ...] | None = None  # MLP widths after the trunk; None: (256, 256) for vectors, () for images
    activation: str = "relu"  # hidden-layer activation
    logit_penalty: float = 0.5  # weight of mean(logits^2) (d3rlpy's beta)
    normalize_observations: bool = True  # standardize vector observations with dataset statistics


def imitation_loss(logits: torch.Tensor, actions: torch.Tensor, logit_penalty: float) -> tuple[torch.Tensor, dict]:
    """Cross-entropy of the dataset's actions plus ``logit_penalty * mean(logits^2)``."""
    cross_entropy = F.cross_entropy(logits, actions.long())
    loss = cross_entropy + logit_penalty * logits.pow(2).mean()
    accuracy = (logits.argmax(-1) == actions.long()).float().mean()
    return loss, {"cross_entropy": cross_entropy.detach(), "accuracy": accuracy.detach()}


@register("discrete_bc", paper="Pomerleau 1991, behaviour cloning (categorical policy)", action_type="discrete")
class DiscreteBC(Algorithm):
    Config = DiscreteBCConfig

    def __init__(self, observation_space, action_space, config: DiscreteBCConfig) -> None:
        super().__init__(observation_space, action_space, config)
        widths = head_widths(config, self.encoder)
        self.actor = CategoricalPolicy(make_trunk(self.encoder, config), int(action_space.n), widths, activation_name=config.activation)
        self.optimizers = {"actor": adam(self.actor.parameters(), config.lr)}

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        logits = self.actor(self.encoder(batch.observations))
        loss, metrics = imitation_loss(logits, batch.actions, self.config.logit_penalty)
        step(self.optimizers["actor"], loss)
        self.num_updates += 1
        return metrics

    @torch.no_grad()
    def act(self, observations, deterministic: bool = True) -> torch.Tensor:
        return self.actor.act(self.encoder(observations), deterministic)
