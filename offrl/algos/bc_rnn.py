"""BC-RNN: behaviour cloning with a recurrent policy trained on windows of demonstrations.

Mandlekar et al. 2021, "What Matters in Learning from Offline Human
Demonstrations for Robot Manipulation" (robomimic), with its defaults: a
2-layer LSTM of 400 units over windows of 10 steps, a linear action head
(deterministic, MSE) or a 5-mode GMM head (``bc_rnn_gmm``, log-likelihood),
Adam at 1e-4, batch 100. The recurrent network starts each window from its
zero state; windows start at any step of a demonstration and are padded past
its end, and the padded steps are masked out of the loss (robomimic repeats
the last step there and trains on it). In rollouts the hidden state is
carried from step to step and reset at each episode's start and every
``horizon`` steps, robomimic's ``rnn.horizon``: the network never runs longer
from its zero state than it was trained to.
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
from offrl.data.sequences import SequenceBatch, SequenceSpec
from offrl.nn.encoders import EncoderConfig, encode_sequence, make_trunk
from offrl.rollout import RolloutPolicy, to_tensor

RecurrentState = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


@dataclasses.dataclass
class BCRNNConfig(EncoderConfig):
    seq_length: int = 10  # steps per training window (robomimic's train.seq_length)
    horizon: int | None = None  # rollouts reset the recurrent state every this many steps; None: seq_length
    rnn_type: Literal["lstm", "gru"] = "lstm"  # recurrent cell
    rnn_hidden_dim: int = 400  # recurrent state width
    rnn_num_layers: int = 2  # stacked recurrent layers
    policy: Literal["deterministic", "gmm"] = "deterministic"  # action head: MSE regression or a Gaussian mixture
    hidden_dims: tuple[int, ...] = ()  # MLP widths between the recurrent network and the action head
    activation: str = "relu"  # hidden-layer activation of that MLP
    num_modes: int = 5  # GMM head: mixture components
    min_std: float = 1e-4  # GMM head: floor added to each component's softplus standard deviation
    lr: float = 1e-4  # Adam learning rate
    weight_decay: float = 0.0  # Adam L2 penalty
    grad_clip: float | None = None  # gradient-norm clip (None: off)
    batch_size: int = 100  # windows per gradient step
    normalize_observations: bool = True  # standardize low-dimensional observations with dataset statistics


@dataclasses.dataclass
class BCRNNGMMConfig(BCRNNConfig):
    policy: Literal["deterministic", "gmm"] = "gmm"  # action head: MSE regression or a Gaussian mixture


class RecurrentActor(nn.Module):
    """An LSTM (or GRU) over per-step features and an action head, deterministic or a GMM, in the normalized
    action space; shared by BC-RNN and HBC's low-level policy."""

    def __init__(self, in_dim: int, action_dim: int, config: BCRNNConfig) -> None:
        super().__init__()
        self.config = config
        cell = nn.LSTM if config.rnn_type == "lstm" else nn.GRU
        self.rnn = cell(in_dim, config.rnn_hidden_dim, config.rnn_num_layers, batch_first=True)
        self.head = make_policy(config, config.rnn_hidden_dim, action_dim)

    def sequence_loss(self, features: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Mean per-step loss over the real steps of windows ``[B, T, F]`` run from the zero state."""
        return masked_imitation_loss(self.config, self.head, self.rnn(features)[0], actions, mask)

    def step(self, features: torch.Tensor, state: RecurrentState | None, deterministic: bool) -> tuple[torch.Tensor, RecurrentState]:
        """Normalized actions for one step of features ``[N, F]`` and the next recurrent state."""
        hidden, state = self.rnn(features.unsqueeze(1), state)
        return policy_actions(self.config, self.head, hidden[:, 0], deterministic), state

    def zero_state(self, count: int, device: torch.device) -> RecurrentState:
        hidden = torch.zeros((self.config.rnn_num_layers, count, self.config.rnn_hidden_dim), device=device)
        return (hidden, torch.zeros_like(hidden)) if self.config.rnn_type == "lstm" else hidden


def reset_rows(state: RecurrentState, rows: torch.Tensor) -> None:
    """Zero the recurrent state of the environments ``rows`` (a boolean mask), in place."""
    for part in state if isinstance(state, tuple) else (state,):
        part[:, rows] = 0.0


@register("bc_rnn", paper="Mandlekar et al. 2021, What Matters in Learning from Offline Human Demonstrations (BC-RNN)")
class BCRNN(Algorithm):
    Config = BCRNNConfig
    batch_kind = "sequences"

    def __init__(self, observation_space, action_space, config: BCRNNConfig) -> None:
        super().__init__(observation_space, action_space, config)
        if config.seq_length < 1 or (config.horizon is not None and config.horizon < 1):
            raise ValueError(f"{self.name}: seq_length and horizon must be positive")
        self.trunk = make_trunk(self.encoder, config)  # a CNN per image key, nothing for vectors
        self.actor = RecurrentActor(self.trunk.out_dim, self.action_dim, config)
        self.optimizers = {"policy": adam([*self.trunk.parameters(), *self.actor.parameters()], config.lr, config.weight_decay)}

    def sequence_window(self) -> SequenceSpec:
        return SequenceSpec(self.config.seq_length, "right")

    def loss(self, batch: SequenceBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean per-step imitation loss over the real (unpadded) steps of the windows."""
        features = encode_sequence(self.encoder, self.trunk, batch.observations)
        return self.actor.sequence_loss(features, self.action_scaler.normalize(batch.actions), batch.mask)

    def update(self, batch: SequenceBatch) -> dict[str, torch.Tensor]:
        loss, metrics = self.loss(batch)
        step(self.optimizers["policy"], loss, max_grad_norm=self.config.grad_clip)
        self.num_updates += 1
        return metrics

    def step_policy(self, observations: Any, state: RecurrentState | None, deterministic: bool) -> tuple[torch.Tensor, RecurrentState]:
        """One step of every environment: actions in the environment's space and the next recurrent state
        (``state`` None: the zero state)."""
        with evaluating(self):
            actions, state = self.actor.step(self.trunk(self.encoder(observations)), state, deterministic)
        return self.action_scaler.denormalize(actions), state

    def zero_state(self, count: int) -> RecurrentState:
        return self.actor.zero_state(count, self.device)

    @torch.no_grad()
    def act(self, observations, deterministic: bool = True) -> torch.Tensor:
        """Each observation as the first step of an episode (the zero recurrent state)."""
        return self.step_policy(observations, None, deterministic)[0]

    def rollout_policy(self, num_envs: int, *, deterministic: bool = True) -> RolloutPolicy:
        return RecurrentRollout(self, num_envs, deterministic=deterministic)


@register("bc_rnn_gmm", paper="Mandlekar et al. 2021, What Matters in Learning from Offline Human Demonstrations (BC-RNN-GMM)")
class BCRNNGMM(BCRNN):
    Config = BCRNNGMMConfig


class RecurrentRollout(RolloutPolicy):
    """Per-environment recurrent state, carried between steps; zeroed when an episode starts and every
    ``horizon`` steps of it."""

    def __init__(self, algo: BCRNN, num_envs: int, *, deterministic: bool) -> None:
        self.algo = algo
        self.deterministic = deterministic
        self.horizon = algo.config.horizon or algo.config.seq_length
        self.steps = np.zeros(num_envs, dtype=np.int64)  # steps since the episode started
        self.state: RecurrentState | None = None

    def start_episode(self, env_indices: np.ndarray | None = None) -> None:
        if env_indices is None:
            self.steps[:] = 0
        else:
            self.steps[env_indices] = 0

    @torch.no_grad()
    def __call__(self, observations: Any) -> np.ndarray:
        algo = self.algo
        observations = to_tensor(observations, algo.device)
        if self.state is None:
            self.state = algo.zero_state(len(self.steps))
        reset_rows(self.state, torch.as_tensor(self.steps % self.horizon == 0, device=algo.device))
        actions, self.state = algo.step_policy(observations, self.state, self.deterministic)
        self.steps += 1
        return actions.cpu().numpy()
