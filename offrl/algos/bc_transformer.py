"""BC-Transformer: behaviour cloning with a causal transformer over the last steps' observations.

robomimic's BC-Transformer (Mandlekar et al. 2021's library, v0.3) with its
defaults: a context of 10 observations, embedding 512, 6 blocks of 8 heads,
dropout 0.1, a 5-mode GMM action head, AdamW at 1e-4 with weight decay 0.01,
batch 100, and only the last step's action supervised. Each observation is
one token (its encoding plus a learned position embedding); attention is
causal. Deviation: robomimic fills a context that reaches back before the
episode's start with copies of the first observation; here those positions
are masked out of attention, in training and in rollouts alike.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from offrl.algos.base import Algorithm
from offrl.algos.bc import make_policy, masked_imitation_loss, policy_actions
from offrl.algos.common import adam, evaluating, step
from offrl.algos.registry import register
from offrl.data.sequences import SequenceBatch
from offrl.nn.encoders import EncoderConfig, encode_sequence, make_trunk
from offrl.nn.layers import Dropout, causal_attention_bias, transformer_blocks
from offrl.rollout import RolloutPolicy, to_tensor


@dataclasses.dataclass
class BCTransformerConfig(EncoderConfig):
    context_length: int = 10  # observations per context (robomimic's train.frame_stack)
    embed_dim: int = 512  # token width
    num_layers: int = 6  # transformer blocks
    num_heads: int = 8  # attention heads (must divide embed_dim)
    dropout: float = 0.1  # dropout on embeddings, attention and block outputs
    supervise_all_steps: bool = False  # train every real step's action, not only the last one
    policy: Literal["gmm", "deterministic"] = "gmm"  # action head: a Gaussian mixture or MSE regression
    hidden_dims: tuple[int, ...] = ()  # MLP widths between the transformer and the action head
    activation: str = "relu"  # hidden-layer activation of that MLP
    num_modes: int = 5  # GMM head: mixture components
    min_std: float = 1e-4  # GMM head: floor added to each component's softplus standard deviation
    lr: float = 1e-4  # AdamW learning rate
    weight_decay: float = 0.01  # AdamW weight decay
    grad_clip: float | None = None  # gradient-norm clip (None: off)
    batch_size: int = 100  # contexts per gradient step
    normalize_observations: bool = True  # standardize low-dimensional observations with dataset statistics


class CausalTransformer(nn.Module):
    """Step features ``[B, K, F]`` -> contextual features ``[B, K, D]``, each step seeing itself and the real steps before it."""

    def __init__(self, in_dim: int, config: BCTransformerConfig) -> None:
        super().__init__()
        if config.embed_dim % config.num_heads:
            raise ValueError(f"embed_dim {config.embed_dim} is not divisible by num_heads {config.num_heads}")
        self.num_heads = config.num_heads
        self.embed = nn.Linear(in_dim, config.embed_dim)
        self.position = nn.Parameter(torch.zeros(1, config.context_length, config.embed_dim))
        nn.init.normal_(self.position, std=0.02)
        self.dropout = Dropout(config.dropout)
        self.blocks = transformer_blocks(config.embed_dim, config.num_heads, config.num_layers, config.dropout)
        self.norm = nn.LayerNorm(config.embed_dim)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        tokens = self.dropout(self.embed(features) + self.position[:, -features.shape[1] :])
        return self.norm(self.blocks(tokens, mask=causal_attention_bias(mask, self.num_heads)))


@register("bc_transformer", paper="Mandlekar et al. 2021, robomimic (BC-Transformer, GMM head)")
class BCTransformer(Algorithm):
    Config = BCTransformerConfig
    batch_kind = "sequences"

    def __init__(self, observation_space, action_space, config: BCTransformerConfig) -> None:
        super().__init__(observation_space, action_space, config)
        self.trunk = make_trunk(self.encoder, config)
        self.model = CausalTransformer(self.trunk.out_dim, config)
        self.actor = make_policy(config, config.embed_dim, self.action_dim)
        parameters = [*self.trunk.parameters(), *self.model.parameters(), *self.actor.parameters()]
        self.optimizers = {"policy": adam(parameters, config.lr, config.weight_decay, decoupled=True)}  # AdamW

    def loss(self, batch: SequenceBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        hidden = self.model(encode_sequence(self.encoder, self.trunk, batch.observations), batch.mask)
        actions = self.action_scaler.normalize(batch.actions)
        if not self.config.supervise_all_steps:  # the last position is always a real step (left padding)
            return masked_imitation_loss(self.config, self.actor, hidden[:, -1:], actions[:, -1:], batch.mask[:, -1:])
        return masked_imitation_loss(self.config, self.actor, hidden, actions, batch.mask)

    def update(self, batch: SequenceBatch) -> dict[str, torch.Tensor]:
        loss, metrics = self.loss(batch)
        step(self.optimizers["policy"], loss, max_grad_norm=self.config.grad_clip)
        self.num_updates += 1
        return metrics

    def context_actions(self, features: torch.Tensor, mask: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """Environment actions for the last step of each context of encoded steps ``[B, K, F]``."""
        with evaluating(self):
            actions = policy_actions(self.config, self.actor, self.model(features, mask)[:, -1], deterministic)
        return self.action_scaler.denormalize(actions)

    def encode_step(self, observations: Any) -> torch.Tensor:
        with evaluating(self):
            return self.trunk(self.encoder(observations))

    @torch.no_grad()
    def act(self, observations, deterministic: bool = True) -> torch.Tensor:
        """Each observation as the first step of an episode (a context of one)."""
        features = self.encode_step(observations).unsqueeze(1)
        mask = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
        return self.context_actions(features, mask, deterministic)

    def rollout_policy(self, num_envs: int, *, deterministic: bool = True) -> RolloutPolicy:
        return ContextRollout(self, num_envs, deterministic=deterministic)


class ContextRollout(RolloutPolicy):
    """The last ``context_length`` encoded observations of each environment; an episode's start empties its context."""

    def __init__(self, algo: BCTransformer, num_envs: int, *, deterministic: bool) -> None:
        self.algo = algo
        self.deterministic = deterministic
        length = algo.config.context_length
        self.features = torch.zeros(num_envs, length, algo.trunk.out_dim, device=algo.device)
        self.mask = torch.zeros(num_envs, length, dtype=torch.bool, device=algo.device)

    def start_episode(self, env_indices: np.ndarray | None = None) -> None:
        rows = slice(None) if env_indices is None else torch.as_tensor(env_indices, device=self.mask.device)
        self.mask[rows] = False

    @torch.no_grad()
    def __call__(self, observations: Any) -> np.ndarray:
        algo = self.algo
        self.features = torch.roll(self.features, shifts=-1, dims=1)
        self.mask = torch.roll(self.mask, shifts=-1, dims=1)
        self.features[:, -1] = algo.encode_step(to_tensor(observations, algo.device))
        self.mask[:, -1] = True
        return algo.context_actions(self.features, self.mask, self.deterministic).cpu().numpy()
