"""Decision Transformer: a causal transformer over (return-to-go, state, action) tokens.

Chen et al. 2021, "Decision Transformer: Reinforcement Learning via Sequence
Modeling", with CORL's locomotion settings: context 20, embedding 128, three
layers, one head, dropout 0.1 (on embeddings, attention weights and residual
branches, as GPT-2), AdamW (1e-4, weight decay 1e-4) with a 10,000 step
linear warm-up, gradient clipping 0.25, batch 64, returns scaled by 1/1000.
The action of each step is predicted from its state token, trained by MSE on
real (unpadded) steps. Acting is conditioned on a target return
(default: the dataset's best episode return) that decreases by each reward
received, with the last ``context_length`` steps as context.

``discrete_dt`` is the same model for discrete actions (Chen et al.'s Atari
variant): actions enter as one-hot vectors, the head predicts logits trained
by cross-entropy, and the policy takes the most likely action.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from offrl.algos.base import Algorithm
from offrl.algos.common import adam, evaluating, step
from offrl.algos.registry import register
from offrl.data.sequences import SequenceBatch
from offrl.nn.encoders import EncoderConfig, encode_sequence, make_trunk
from offrl.nn.layers import Dropout, causal_attention_bias, output_layer, transformer_blocks
from offrl.rollout import RolloutPolicy, to_tensor


@dataclasses.dataclass
class DTConfig(EncoderConfig):
    context_length: int = 20  # K: steps in a training window and in the acting context
    embed_dim: int = 128  # token width
    num_layers: int = 3  # transformer blocks
    num_heads: int = 1  # attention heads
    dropout: float = 0.1  # dropout on embeddings, attention and residuals
    max_timestep: int = 1000  # size of the timestep embedding; later steps share the last one
    lr: float = 1e-4  # AdamW learning rate
    weight_decay: float = 1e-4  # AdamW weight decay
    warmup_steps: int = 10_000  # linear learning-rate warm-up
    grad_clip: float = 0.25  # gradient-norm clip
    return_scale: float = 0.001  # returns-to-go are multiplied by this before embedding
    target_return: float | None = None  # return to condition on when acting; None: the dataset's best episode
    batch_size: int = 64  # windows per gradient step
    normalize_observations: bool = True  # standardize states with dataset statistics


class DecisionTransformerModel(nn.Module):
    def __init__(self, obs_dim: int, action_dim: int, cfg: DTConfig, *, discrete: bool = False) -> None:
        super().__init__()
        d = cfg.embed_dim
        self.num_heads = cfg.num_heads
        self.embed_timestep = nn.Embedding(cfg.max_timestep, d)
        self.embed_return = nn.Linear(1, d)
        self.embed_state = nn.Linear(obs_dim, d)
        self.embed_action = nn.Linear(action_dim, d)
        self.embed_norm = nn.LayerNorm(d)
        self.dropout = Dropout(cfg.dropout)
        self.blocks = transformer_blocks(d, cfg.num_heads, cfg.num_layers, cfg.dropout)
        self.final_norm = nn.LayerNorm(d)
        # continuous: a tanh action in [-1, 1]; discrete: logits over the actions
        head = output_layer(d, action_dim)
        self.predict_action = head if discrete else nn.Sequential(head, nn.Tanh())
        self.max_timestep = cfg.max_timestep

    def forward(self, states, actions, returns_to_go, timesteps, mask) -> torch.Tensor:
        """All inputs ``[B, K, ...]``; returns the predicted action at every step, ``[B, K, A]``."""
        batch, length = mask.shape
        time = self.embed_timestep(timesteps.clamp(max=self.max_timestep - 1))
        tokens = torch.stack(
            [
                self.embed_return(returns_to_go.unsqueeze(-1)) + time,
                self.embed_state(states) + time,
                self.embed_action(actions) + time,
            ],
            dim=2,
        ).reshape(batch, 3 * length, -1)
        tokens = self.dropout(self.embed_norm(tokens))
        hidden = self.blocks(tokens, mask=causal_attention_bias(mask, self.num_heads, tokens_per_step=3))
        hidden = self.final_norm(hidden).reshape(batch, length, 3, -1)
        return self.predict_action(hidden[:, :, 1])


@register("dt", paper="Chen et al. 2021, Decision Transformer: Reinforcement Learning via Sequence Modeling")
class DecisionTransformer(Algorithm):
    Config = DTConfig
    batch_kind = "sequences"

    def __init__(self, observation_space, action_space, config: DTConfig) -> None:
        super().__init__(observation_space, action_space, config)
        self.discrete = self.action_type == "discrete"
        if self.discrete:
            self.action_dim = int(action_space.n)  # one-hot width
        self.trunk = make_trunk(self.encoder, config)  # a CNN for image states, nothing for vectors
        self.model = DecisionTransformerModel(self.trunk.out_dim, self.action_dim, config, discrete=self.discrete)
        self.register_buffer("target_return", torch.tensor(float(config.target_return or 0.0)))
        parameters = [*self.model.parameters(), *self.trunk.parameters()]
        self.optimizers = {"model": adam(parameters, config.lr, config.weight_decay, decoupled=True)}  # AdamW

    def set_dataset_info(self, info: dict[str, float]) -> None:
        if self.config.target_return is None:
            self.target_return.fill_(info["max_return"])

    def update(self, batch: SequenceBatch) -> dict[str, torch.Tensor]:
        cfg = self.config
        states = encode_sequence(self.encoder, self.trunk, batch.observations)
        actions = self.action_inputs(batch.actions) * batch.mask.unsqueeze(-1)
        predicted = self.model(states, actions, batch.returns_to_go * cfg.return_scale, batch.timesteps, batch.mask)
        if self.discrete:
            weights = batch.mask.float()
            errors = F.cross_entropy(predicted.flatten(0, 1), batch.actions.flatten().long(), reduction="none")
            loss = (errors * weights.flatten()).sum() / weights.sum()
        else:
            weights = batch.mask.unsqueeze(-1).float()
            loss = ((predicted - actions).pow(2) * weights).sum() / (weights.sum() * self.action_dim)
        optimizer = self.optimizers["model"]
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * min(1.0, (self.num_updates + 1) / max(cfg.warmup_steps, 1))
        step(optimizer, loss, max_grad_norm=cfg.grad_clip)
        self.num_updates += 1
        return {"action_cross_entropy" if self.discrete else "action_mse": loss.detach()}

    def action_inputs(self, actions: torch.Tensor) -> torch.Tensor:
        """Dataset actions as the model's action tokens: normalized to [-1, 1], or one-hot."""
        if self.discrete:
            return F.one_hot(actions.long(), self.action_dim).float()
        return self.action_scaler.normalize(actions)

    def env_actions(self, predicted: torch.Tensor) -> torch.Tensor:
        """The model's predictions ``[B, A]`` as environment actions."""
        return predicted.argmax(dim=-1) if self.discrete else self.action_scaler.denormalize(predicted)

    def rollout_policy(self, num_envs: int, *, deterministic: bool = True) -> RolloutPolicy:
        return DTRollout(self, num_envs)

    @torch.no_grad()
    def act(self, observations, deterministic: bool = True) -> torch.Tensor:
        """Each observation as the first step of an episode, conditioned on the target return."""
        states = self.trunk(self.encoder(observations)).unsqueeze(1)
        batch = states.shape[0]
        zeros = torch.zeros(batch, 1, self.action_dim, device=states.device)
        returns = (self.target_return * self.config.return_scale).expand(batch, 1)
        timesteps = torch.zeros(batch, 1, dtype=torch.long, device=states.device)
        mask = torch.ones(batch, 1, dtype=torch.bool, device=states.device)
        with evaluating(self.model):
            return self.env_actions(self.model(states, zeros, returns, timesteps, mask)[:, -1])


class DTRollout(RolloutPolicy):
    """Per-environment contexts of the last K steps; the return-to-go falls by each observed reward."""

    def __init__(self, algo: DecisionTransformer, num_envs: int) -> None:
        self.algo = algo
        cfg = algo.config
        device = algo.device
        self.length = cfg.context_length
        self.states = torch.zeros(num_envs, self.length, algo.trunk.out_dim, device=device)
        self.actions = torch.zeros(num_envs, self.length, algo.action_dim, device=device)
        self.returns = torch.zeros(num_envs, self.length, device=device)
        self.timesteps = torch.zeros(num_envs, self.length, dtype=torch.long, device=device)
        self.mask = torch.zeros(num_envs, self.length, dtype=torch.bool, device=device)
        self.current_return = torch.zeros(num_envs, device=device)
        self.current_step = torch.zeros(num_envs, dtype=torch.long, device=device)

    def start_episode(self, env_indices: np.ndarray | None = None) -> None:
        rows = slice(None) if env_indices is None else torch.as_tensor(env_indices, device=self.mask.device)
        self.mask[rows] = False
        self.current_return[rows] = self.algo.target_return
        self.current_step[rows] = 0

    @torch.no_grad()
    def __call__(self, observations: Any) -> np.ndarray:
        algo = self.algo
        for buffer in (self.states, self.actions, self.returns, self.timesteps, self.mask):
            buffer.copy_(torch.roll(buffer, shifts=-1, dims=1))
        with evaluating(algo):
            self.states[:, -1] = algo.trunk(algo.encoder(to_tensor(observations, algo.device)))
        self.actions[:, -1] = 0.0
        self.returns[:, -1] = self.current_return * algo.config.return_scale
        self.timesteps[:, -1] = self.current_step
        self.mask[:, -1] = True
        with evaluating(algo.model):
            predicted = algo.model(self.states, self.actions * self.mask.unsqueeze(-1), self.returns, self.timesteps, self.mask)
        actions = algo.env_actions(predicted[:, -1])
        self.actions[:, -1] = algo.action_inputs(actions) if algo.discrete else predicted[:, -1]
        return actions.cpu().numpy()

    def observe(self, rewards: np.ndarray) -> None:
        self.current_return -= torch.as_tensor(rewards, dtype=torch.float32, device=self.current_return.device)
        self.current_step += 1


@register("discrete_dt", paper="Chen et al. 2021, Decision Transformer (discrete actions)", action_type="discrete")
class DiscreteDecisionTransformer(DecisionTransformer):
    Config = DTConfig
