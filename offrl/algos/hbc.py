"""HBC (hierarchical behaviour cloning) and IRIS: a subgoal planner over a subgoal-conditioned recurrent policy.

Mandlekar et al. 2020, "Learning to Generalize Across Long-Horizon Tasks from
Human Demonstrations", as robomimic implements it, with its defaults. The
planner (robomimic's goal-learning network) is a conditional VAE (latent 16,
300x400 layers, KL weight 1, Adam 1e-4) that predicts the subgoal, the
observation ``subgoal_horizon`` (10) steps ahead, from the current one. The
low-level policy is a BC-RNN (2-layer LSTM of 400) that reads each step's
observation together with the subgoal; it trains on windows of
``subgoal_horizon`` steps with the true subgoal of the window (the observation
``subgoal_horizon`` steps after its first, or the demonstration's end). In
rollouts the planner proposes a subgoal every ``subgoal_horizon`` steps and the
policy's recurrent state restarts with it. robomimic decodes a draw of the
planner's prior; offrl does so when not deterministic, and deterministically
keeps the densest of the subgoals decoded from fixed prior draws (see ``plan``). Subgoals are low-dimensional
observation keys (``subgoal_keys``; default: all of them), standardized as the
policy's inputs are.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch

from offrl.algos.base import Algorithm
from offrl.algos.bc_rnn import RecurrentActor, RecurrentState, reset_rows
from offrl.algos.common import adam, evaluating, step
from offrl.algos.registry import register
from offrl.data.batch import Batch
from offrl.data.sequences import SequenceBatch, SequenceSpec
from offrl.data.tree import tree_map
from offrl.nn.encoders import DictEncoder, EncoderConfig, FlatEncoder, encode_sequence, make_trunk
from offrl.nn.vae import ConditionalVAE, vae_loss
from offrl.rollout import RolloutPolicy, to_tensor


@dataclasses.dataclass
class HBCConfig(EncoderConfig):
    subgoal_horizon: int = 10  # steps between subgoals: the planner looks this far ahead, the policy's windows are this long
    subgoal_keys: tuple[str, ...] = ()  # low-dimensional observation keys a subgoal holds (empty: all of them)
    planner_latent_dim: int = 16  # planner VAE latent width
    planner_hidden_dims: tuple[int, ...] = (300, 400)  # planner VAE encoder and decoder MLP widths
    planner_kl_weight: float = 1.0  # beta of the planner's ELBO
    planner_lr: float = 1e-4  # planner Adam learning rate
    planning_samples: int = 32  # deterministic planning: subgoals decoded from this many fixed prior draws, the densest kept
    rnn_type: Literal["lstm", "gru"] = "lstm"  # low-level policy: recurrent cell
    rnn_hidden_dim: int = 400  # low-level policy: recurrent state width
    rnn_num_layers: int = 2  # low-level policy: stacked recurrent layers
    policy: Literal["deterministic", "gmm"] = "deterministic"  # low-level policy: action head
    hidden_dims: tuple[int, ...] = ()  # low-level policy: MLP widths between the recurrent network and the head
    activation: str = "relu"  # hidden-layer activation of that MLP
    num_modes: int = 5  # GMM head: mixture components
    min_std: float = 1e-4  # GMM head: floor added to each component's softplus standard deviation
    lr: float = 1e-4  # low-level policy Adam learning rate
    weight_decay: float = 0.0  # Adam L2 penalty of both networks
    grad_clip: float | None = None  # gradient-norm clip (None: off)
    batch_size: int = 100  # windows per gradient step
    normalize_observations: bool = True  # standardize low-dimensional observations (and subgoals) with dataset statistics


@register("hbc", paper="Mandlekar et al. 2020, Learning to Generalize Across Long-Horizon Tasks from Human Demonstrations (HBC)")
class HBC(Algorithm):
    Config = HBCConfig
    batch_kind = "sequences"

    def __init__(self, observation_space, action_space, config: HBCConfig) -> None:
        super().__init__(observation_space, action_space, config)
        if config.subgoal_horizon < 1:
            raise ValueError(f"{self.name}: subgoal_horizon must be positive")
        self.subgoal_columns = subgoal_columns(self.encoder, config.subgoal_keys)
        subgoal_dim = len(self.subgoal_columns)
        self.planner_trunk = make_trunk(self.encoder, config)
        self.planner = ConditionalVAE(
            self.planner_trunk.out_dim, subgoal_dim, config.planner_hidden_dims, config.planner_latent_dim, bounded=False
        )
        # fixed prior draws for deterministic planning (part of the checkpoint: a loaded policy plans the same)
        self.register_buffer("planning_latents", torch.randn(config.planning_samples, config.planner_latent_dim))
        self.trunk = make_trunk(self.encoder, config)
        self.actor = RecurrentActor(self.trunk.out_dim + subgoal_dim, self.action_dim, config)
        self.optimizers = {
            "planner": adam([*self.planner_trunk.parameters(), *self.planner.parameters()], config.planner_lr, config.weight_decay),
            "actor": adam([*self.trunk.parameters(), *self.actor.parameters()], config.lr, config.weight_decay),
        }

    def sequence_window(self) -> SequenceSpec:
        return SequenceSpec(self.config.subgoal_horizon, "right", future=self.config.subgoal_horizon)

    def subgoals(self, observations: Any) -> torch.Tensor:
        """The standardized subgoal keys of observations ``[B, ...]``: ``[B, G]``."""
        if isinstance(self.encoder, DictEncoder):  # its low-dimensional part (not a submodule here: no second copy)
            return self.encoder.vectors({k: observations[k] for k in self.encoder.vector_keys})[:, self.subgoal_columns]
        return self.encoder(observations)[:, self.subgoal_columns]

    def losses(self, batch: SequenceBatch) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """The planner's ELBO on the windows' subgoals and the policy's imitation loss given them (no shared weights)."""
        observations = batch.observations
        first = tree_map(lambda column: column[:, 0], observations)
        target = self.subgoals(batch.future_observations)
        planner_loss, planner_metrics = vae_loss(
            self.planner, self.planner_trunk(self.encoder(first)), target, self.config.planner_kl_weight
        )
        features = encode_sequence(self.encoder, self.trunk, observations)
        conditioned = torch.cat([features, target.unsqueeze(1).expand(-1, features.shape[1], -1)], dim=-1)
        actor_loss, actor_metrics = self.actor.sequence_loss(conditioned, self.action_scaler.normalize(batch.actions), batch.mask)
        metrics = {f"planner_{key.removeprefix('vae_')}": value for key, value in planner_metrics.items()}
        return planner_loss, actor_loss, {**metrics, **actor_metrics}

    def loss(self, batch: SequenceBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        planner_loss, actor_loss, metrics = self.losses(batch)
        return planner_loss + actor_loss, metrics

    def update(self, batch: SequenceBatch) -> dict[str, torch.Tensor]:
        planner_loss, actor_loss, metrics = self.losses(batch)
        step(self.optimizers["planner"], planner_loss, max_grad_norm=self.config.grad_clip)
        step(self.optimizers["actor"], actor_loss, max_grad_norm=self.config.grad_clip)
        self.num_updates += 1
        return metrics

    def plan(self, observations: Any, deterministic: bool) -> torch.Tensor:
        """Standardized subgoals for observations ``[N, ...]``. Not deterministic: decoded from a draw of the
        prior, as robomimic plans. Deterministic: of the subgoals decoded from ``planning_samples`` fixed
        draws, the one with the most others close by (a kernel density with a quarter of the median distance
        as bandwidth): a subgoal the planner does propose, in its most populated mode. The decoded prior mean
        (or a medoid) would not do: where demonstrations split, left or right of an obstacle, it lies between
        the modes, a subgoal no demonstration reached."""
        with evaluating(self):
            features = self.planner_trunk(self.encoder(observations))
            if not deterministic:
                return self.planner.decode(features, torch.randn(features.shape[0], self.planner.latent_dim, device=features.device))
            decoded = self.propose(features, self.planning_latents)
            count = features.shape[0]
            distances = torch.cdist(decoded, decoded)  # [N, P, P]
            bandwidth = 0.25 * distances.flatten(1).median(dim=1).values.clamp(min=1e-6)[:, None, None]
            densest = torch.exp(-0.5 * (distances / bandwidth).pow(2)).sum(-1).argmax(-1)  # [N]
            return decoded[torch.arange(count, device=decoded.device), densest]

    def propose(self, features: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """The subgoals the planner decodes for each of ``features`` ``[N, F]`` from every latent ``[P, L]``: ``[N, P, G]``."""
        count, draws = features.shape[0], latents.shape[0]
        return self.planner.decode(features.repeat_interleave(draws, 0), latents.repeat(count, 1)).reshape(count, draws, -1)

    def step_policy(self, observations: Any, subgoals: torch.Tensor, state: RecurrentState | None, deterministic: bool):
        """One step of every environment towards its subgoal: environment actions and the next recurrent state."""
        with evaluating(self):
            features = torch.cat([self.trunk(self.encoder(observations)), subgoals], dim=-1)
            actions, state = self.actor.step(features, state, deterministic)
        return self.action_scaler.denormalize(actions), state

    @torch.no_grad()
    def act(self, observations, deterministic: bool = True) -> torch.Tensor:
        """Each observation as the first step of an episode: a fresh subgoal, the zero recurrent state."""
        return self.step_policy(observations, self.plan(observations, deterministic), None, deterministic)[0]

    def rollout_policy(self, num_envs: int, *, deterministic: bool = True) -> RolloutPolicy:
        return HBCRollout(self, num_envs, deterministic=deterministic)


def subgoal_columns(encoder, keys: tuple[str, ...]) -> list[int]:
    """The columns of the standardized low-dimensional observations that the subgoal keys fill."""
    vectors = encoder.vectors if isinstance(encoder, DictEncoder) else encoder
    if not isinstance(vectors, FlatEncoder):
        raise ValueError("HBC's subgoals are low-dimensional observations: the observations have none")
    if vectors.keys is None:
        if keys:
            raise ValueError(f"subgoal_keys {list(keys)} need dict observations")
        return list(range(vectors.out_dim))
    unknown = [key for key in keys if key not in vectors.keys]
    if unknown:
        raise ValueError(f"subgoal_keys {unknown} are not low-dimensional observation keys ({', '.join(vectors.keys)})")
    offsets = np.cumsum([0, *vectors.widths])
    chosen = keys or tuple(vectors.keys)
    return [c for index, key in enumerate(vectors.keys) if key in chosen for c in range(offsets[index], offsets[index + 1])]


class HBCRollout(RolloutPolicy):
    """Per environment: the current subgoal, replanned every ``subgoal_horizon`` steps, and the policy's recurrent
    state, restarted with each subgoal."""

    def __init__(self, algo: HBC, num_envs: int, *, deterministic: bool) -> None:
        self.algo, self.deterministic = algo, deterministic
        self.steps = np.zeros(num_envs, dtype=np.int64)
        self.subgoals: torch.Tensor | None = None
        self.state = algo.actor.zero_state(num_envs, algo.device)

    def start_episode(self, env_indices: np.ndarray | None = None) -> None:
        self.steps[slice(None) if env_indices is None else env_indices] = 0

    @torch.no_grad()
    def __call__(self, observations: Any) -> np.ndarray:
        algo = self.algo
        observations = to_tensor(observations, algo.device)
        replan = torch.as_tensor(self.steps % algo.config.subgoal_horizon == 0, device=algo.device)
        planned = algo.plan(observations, self.deterministic)
        self.subgoals = planned if self.subgoals is None else torch.where(replan[:, None], planned, self.subgoals)
        reset_rows(self.state, replan)
        actions, self.state = algo.step_policy(observations, self.subgoals, self.state, self.deterministic)
        self.steps += 1
        return actions.cpu().numpy()


@dataclasses.dataclass
class IRISConfig(HBCConfig):
    num_proposals: int = 100  # subgoals the planner proposes at each replanning; the value network keeps the best
    value_hidden_dims: tuple[int, ...] = (300, 400)  # BCQ value network: critic, perturbation actor and VAE widths
    value_lr: float = 1e-3  # BCQ value network Adam learning rate (all three parts)
    value_discount: float = 0.99  # reward discount of the value network
    value_num_actions: int = 10  # BCQ's candidate actions when it scores a subgoal


@register("iris", paper="Mandlekar et al. 2020, IRIS: Implicit Reinforcement without Interaction at Scale for Control from Offline Robot Manipulation Data")
class IRIS(HBC):
    """HBC whose planner proposes ``num_proposals`` subgoals and keeps the one a value network rates highest:
    BCQ (Fujimoto et al. 2019) trained on the task's rewards over the subgoal keys (the windows' first
    transitions), so it can score a proposed subgoal as a state. A variant of HBC's planning, written as
    its subclass: the networks, losses and rollouts are HBC's."""

    Config = IRISConfig

    def __init__(self, observation_space, action_space, config: IRISConfig) -> None:
        super().__init__(observation_space, action_space, config)
        from offrl.algos.bcq import BCQ, BCQConfig
        from offrl.config import make_config

        subgoal_space = gym.spaces.Box(-np.inf, np.inf, (len(self.subgoal_columns),), np.float32)
        widths = config.value_hidden_dims
        value_config = make_config(BCQConfig, {
            "hidden_dims": widths, "vae_hidden_dims": widths, "actor_lr": config.value_lr, "critic_lr": config.value_lr,
            "vae_lr": config.value_lr, "discount": config.value_discount, "num_eval_actions": config.value_num_actions,
            "batch_size": config.batch_size,
        }, source=f"{self.name} value network")
        self.value = BCQ(subgoal_space, action_space, value_config)  # its inputs are the standardized subgoal keys
        self.optimizers.update({f"value_{name}": optimizer for name, optimizer in self.value.optimizers.items()})
        self.register_buffer("proposal_latents", torch.randn(config.num_proposals, config.planner_latent_dim))

    def sequence_window(self) -> SequenceSpec:
        horizon = self.config.subgoal_horizon
        return SequenceSpec(horizon, "right", future=horizon, first_transitions=True)

    def update(self, batch: SequenceBatch) -> dict[str, torch.Tensor]:
        metrics = super().update(batch)  # planner and policy
        first = batch.first_transitions
        value_batch = Batch(
            observations=self.subgoals(first.observations), actions=first.actions, rewards=first.rewards,
            next_observations=self.subgoals(first.next_observations), terminals=first.terminals,
        )
        value_metrics = self.value.update(value_batch)
        return {**metrics, **{f"value_{key}": value for key, value in value_metrics.items()}}

    def plan(self, observations: Any, deterministic: bool) -> torch.Tensor:
        """Of ``num_proposals`` subgoals decoded from prior draws (fixed ones when deterministic), the one with the
        highest value."""
        with evaluating(self):
            features = self.planner_trunk(self.encoder(observations))
            latents = self.proposal_latents if deterministic else torch.randn_like(self.proposal_latents)
            decoded = self.propose(features, latents)  # [N, P, G]
            count, proposals = decoded.shape[:2]
            values = self.value.best_proposal(decoded.flatten(0, 1), deterministic=True)[1].reshape(count, proposals)
            return decoded[torch.arange(count, device=decoded.device), values.argmax(-1)]
