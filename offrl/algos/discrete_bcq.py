"""Discrete BCQ: Q-learning restricted to the actions the data's behaviour policy takes.

Fujimoto, Conti, Ghavamzadeh & Pineau 2019, "Benchmarking Batch Deep
Reinforcement Learning Algorithms". One network with a Q head and an
imitation head on a shared trunk (the two heads one 2-member ensemble); an
action is allowed in state s when
``G(a|s) / max_a' G(a'|s) > threshold`` (0.3), and both the TD target and
the policy take the best allowed action. Loss: Huber TD + imitation
cross-entropy + ``1e-2 * mean(logits^2)``, as the authors' code.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import torch
from torch import nn

from offrl.algos.base import Algorithm
from offrl.algos.common import adam, parameter_lists, soft_update, step
from offrl.algos.discrete_bc import imitation_loss
from offrl.algos.dqn import chosen, head_widths, td_loss
from offrl.algos.registry import register
from offrl.data.batch import Batch
from offrl.nn.encoders import EncoderConfig, make_trunk
from offrl.nn.layers import EnsembleMLP


@dataclasses.dataclass
class DiscreteBCQConfig(EncoderConfig):
    threshold: float = 0.3  # actions with G(a|s) / max G(.|s) above this are allowed (tau in the paper)
    discount: float = 0.99  # reward discount
    lr: float = 6.25e-5  # Adam learning rate (the paper's Atari setting)
    batch_size: int = 32  # transitions per gradient step
    hidden_dims: tuple[int, ...] | None = None  # head MLP widths after the trunk; None: (256, 256) for vectors, () for images
    activation: str = "relu"  # hidden-layer activation
    target_update_interval: int = 8000  # gradient steps between copies of the online network into the target
    huber_kappa: float = 1.0  # Huber threshold of the TD loss
    logit_penalty: float = 1e-2  # weight of mean(logits^2) of the imitation head
    normalize_observations: bool = False  # standardize vector observations with dataset statistics


class QImitationNetwork(nn.Module):
    """A trunk shared by a Q head and an imitation (behaviour logits) head. The two heads have the same
    shapes and are one 2-member ensemble (member 0 the Q-values, member 1 the logits): one batched matrix
    product per layer for both, forward and backward, where two MLPs took two."""

    def __init__(self, trunk: nn.Module, n_actions: int, hidden_dims, activation_name: str) -> None:
        super().__init__()
        self.trunk = trunk
        self.heads = EnsembleMLP(2, trunk.out_dim, hidden_dims, n_actions, activation_name=activation_name)

    def forward(self, observations) -> tuple[torch.Tensor, torch.Tensor]:
        both = self.heads(self.trunk(observations))  # [2, B, n]
        return both[0], both[1]

    def q_values(self, observations) -> torch.Tensor:
        """The Q head alone (the target network's part of the TD target)."""
        return self.heads(self.trunk(observations), members=slice(0, 1))[0]


def stack_two_heads(meta: dict[str, Any], tensors: dict[str, torch.Tensor], trunk_parameters: int) -> dict[str, torch.Tensor]:
    """A checkpoint written while the Q and imitation heads were two MLPs (``net.q_head.{i}``,
    ``net.imitation_head.{i}``, nn.Linear layers) in the 2-member ensemble layout: each layer's weights
    transposed and stacked, and the Adam moments of optimizer ``q`` with them (its parameter indices
    renumbered in ``meta``). The networks compute the same outputs; training resumes where it stopped."""
    tensors = dict(tensors)
    prefix = "model/net.q_head."  # the target network has the same layers
    positions = sorted({int(key[len(prefix) :].split(".")[0]) for key in tensors if key.startswith(prefix)})
    for net in ("net", "net_target"):
        for layer, position in enumerate(positions):
            for field in ("weight", "bias"):
                pair = [tensors.pop(f"model/{net}.{head}.{position}.{field}") for head in ("q_head", "imitation_head")]
                tensors[f"model/{net}.heads.layers.{layer}.{field}"] = torch.stack([_as_member(t, field) for t in pair])
    saved = meta.get("optimizers", {}).get("q")
    if saved is None:
        return tensors
    per_head = 2 * len(positions)  # a weight and a bias per layer, in that order
    moved = {key: tensors.pop(key) for key in list(tensors) if key.startswith("optim/q/")}
    for offset in range(per_head):
        q_index, imitation_index = trunk_parameters + offset, trunk_parameters + per_head + offset
        field = "weight" if offset % 2 == 0 else "bias"
        for name in ("exp_avg", "exp_avg_sq"):
            pair = [moved.get(f"optim/q/{index}/{name}") for index in (q_index, imitation_index)]
            if any(t is None for t in pair):  # no state yet (a checkpoint before the first update): a fresh start
                moved = {key: value for key, value in moved.items() if not key.startswith(f"optim/q/{q_index}/")}
                break
            moved[f"optim/q/{q_index}/{name}"] = torch.stack([_as_member(t, field) for t in pair])
    kept = trunk_parameters + per_head
    tensors.update({key: value for key, value in moved.items() if int(key.split("/")[2]) < kept})
    for group in saved["param_groups"]:
        group["params"] = [index for index in group["params"] if index < kept]
    saved["scalars"] = {index: value for index, value in saved.get("scalars", {}).items() if int(index) < kept}
    return tensors


def _as_member(tensor: torch.Tensor, field: str) -> torch.Tensor:
    """An nn.Linear weight ``[out, in]`` or bias ``[out]`` as one EnsembleLinear member: ``[in, out]``, ``[1, out]``."""
    return tensor.T if field == "weight" else tensor.unsqueeze(0)


def allowed_greedy(q_values: torch.Tensor, logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """The highest-valued action among those whose behaviour probability is above ``threshold`` times the largest."""
    log_ratio = logits - logits.max(dim=-1, keepdim=True).values  # log G(a|s) - log max G(.|s): the normalizer cancels
    allowed = log_ratio > math.log(threshold)
    return torch.where(allowed, q_values, torch.finfo(q_values.dtype).min).argmax(dim=-1)


@register("discrete_bcq", paper="Fujimoto et al. 2019, discrete BCQ", action_type="discrete")
class DiscreteBCQ(Algorithm):
    Config = DiscreteBCQConfig

    def __init__(self, observation_space, action_space, config: DiscreteBCQConfig) -> None:
        super().__init__(observation_space, action_space, config)
        self.net = QImitationNetwork(
            make_trunk(self.encoder, config), int(action_space.n), head_widths(config, self.encoder), config.activation
        )
        self.net_target = copy.deepcopy(self.net).requires_grad_(False)
        self.optimizers = {"q": adam(self.net.parameters(), config.lr)}
        self._target_pairs = parameter_lists(self.net_target, self.net)

    def upgrade_checkpoint(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not any(key.startswith("model/net.q_head.") for key in tensors):
            return tensors
        return stack_two_heads(meta, tensors, len(list(self.net.trunk.parameters())))

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        observations = self.encoder(batch.observations)
        with torch.no_grad():
            next_observations = self.encoder(batch.next_observations)
            next_q, next_logits = self.net(next_observations)
            next_actions = allowed_greedy(next_q, next_logits, cfg.threshold)
            next_values = chosen(self.net_target.q_values(next_observations), next_actions)
        q_values, logits = self.net(observations)
        q_loss = td_loss(chosen(q_values, batch.actions), next_values, batch, cfg.discount, cfg.huber_kappa)
        imitation, metrics = imitation_loss(logits, batch.actions, cfg.logit_penalty)
        step(self.optimizers["q"], q_loss + imitation)
        self.num_updates += 1
        if self.num_updates % cfg.target_update_interval == 0:
            soft_update(*self._target_pairs, 1.0)
        return {"td_loss": q_loss.detach(), **metrics, "q_mean": chosen(q_values, batch.actions).detach().mean()}

    @torch.no_grad()
    def act(self, observations, deterministic: bool = True) -> torch.Tensor:  # noqa: ARG002  (greedy among allowed)
        q_values, logits = self.net(self.encoder(observations))
        return allowed_greedy(q_values, logits, self.config.threshold)
