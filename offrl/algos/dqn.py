"""DQN, Double DQN, QR-DQN, and discrete CQL on either critic.

Mnih et al. 2015, "Human-level control through deep reinforcement learning";
van Hasselt, Guez & Silver 2016, "Deep Reinforcement Learning with Double
Q-learning" (the online network picks the next action, the target network
values it); Dabney et al. 2018, "Distributional Reinforcement Learning with
Quantile Regression" (QR-DQN: 200 quantiles, quantile Huber loss);
Kumar et al. 2020, "Conservative Q-Learning for Offline Reinforcement
Learning" (CQL(H) for discrete actions: ``logsumexp_a Q(s, a) - Q(s, a_data)``
added to the TD loss; the paper builds it on QR-DQN for Atari, d3rlpy and
AgileRL's CQN on (double) DQN, our default).

Defaults follow Dopamine's Atari DQN (learning rate 6.25e-5, batch 32,
target copy every 8,000 updates, epsilon to 0.01). Vector tasks such as
CartPole train with far shorter target intervals (``target_update_interval``).
"""

from __future__ import annotations

import copy
import dataclasses

import torch
import torch.nn.functional as F

from offrl.algos.base import Algorithm
from offrl.algos.common import adam, parameter_lists, soft_update, step
from offrl.algos.registry import register
from offrl.data.batch import Batch
from offrl.nn.critics import DiscreteQNetwork
from offrl.nn.encoders import EncoderConfig, FlatEncoder, make_trunk


@dataclasses.dataclass
class DQNConfig(EncoderConfig):
    discount: float = 0.99  # reward discount
    lr: float = 6.25e-5  # Adam learning rate (Dopamine's Atari DQN)
    batch_size: int = 32  # transitions per gradient step
    hidden_dims: tuple[int, ...] | None = None  # MLP widths after the trunk; None: (256, 256) for vectors, () for images
    activation: str = "relu"  # hidden-layer activation
    target_update_interval: int = 8000  # gradient steps between copies of the online network into the target
    double_q: bool = False  # Double DQN: the online network picks the next action, the target values it
    quantiles: int = 0  # QR-DQN: quantiles of the return distribution (0: expected-value DQN)
    huber_kappa: float = 1.0  # Huber threshold of the TD (or quantile) loss
    cql_alpha: float = 0.0  # CQL(H) weight of logsumexp_a Q(s, a) - Q(s, a_data) (discrete_cql: 1.0)
    max_grad_norm: float | None = None  # clip of the gradient norm (None: no clipping)
    exploration_initial: float = 1.0  # epsilon-greedy: epsilon at the first update (online collection)
    exploration_final: float = 0.01  # epsilon after the decay, and of non-greedy acting offline
    exploration_steps: int = 250_000  # gradient updates over which epsilon decays linearly
    normalize_observations: bool = False  # standardize vector observations with dataset statistics

    def validate(self) -> None:
        if self.target_update_interval < 1:
            raise ValueError("target_update_interval must be at least 1")
        if self.quantiles < 0 or self.quantiles == 1:
            raise ValueError("quantiles must be 0 (expected values) or at least 2")


@dataclasses.dataclass
class DoubleDQNConfig(DQNConfig):
    double_q: bool = True  # Double DQN: the online network picks the next action, the target values it


@dataclasses.dataclass
class QRDQNConfig(DQNConfig):
    lr: float = 5e-5  # Adam learning rate (Dabney et al.)
    quantiles: int = 200  # quantiles of the return distribution (Dabney et al.)


@dataclasses.dataclass
class DiscreteCQLConfig(DQNConfig):
    double_q: bool = True  # d3rlpy's DiscreteCQL and AgileRL's CQN take double-Q targets
    cql_alpha: float = 1.0  # weight of the conservative term (Kumar et al.)


def head_widths(config, encoder) -> tuple[int, ...]:
    """``hidden_dims`` or its default: two 256-wide layers after vectors, none after a CNN (whose
    feature layer is the hidden layer, as in the Nature DQN)."""
    if config.hidden_dims is not None:
        return tuple(config.hidden_dims)
    return (256, 256) if isinstance(encoder, FlatEncoder) else ()


def chosen(values: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """``values[b, actions[b]]`` for ``[B, n]`` or ``[B, n, quantiles]`` values."""
    index = actions.long().view(-1, 1, *([1] * (values.dim() - 2))).expand(-1, 1, *values.shape[2:])
    return values.gather(1, index).squeeze(1)


def quantile_huber_loss(quantiles: torch.Tensor, targets: torch.Tensor, kappa: float) -> torch.Tensor:
    """Dabney et al.'s loss between predicted ``[B, N]`` and target ``[B, N']`` quantiles: the
    asymmetric Huber loss at the midpoints ``(2i + 1) / 2N``, summed over predictions, averaged over targets."""
    count = quantiles.shape[-1]
    taus = (torch.arange(count, device=quantiles.device, dtype=quantiles.dtype) + 0.5) / count
    errors = targets.unsqueeze(1) - quantiles.unsqueeze(2)  # [B, N, N']
    huber = F.huber_loss(quantiles.unsqueeze(2).expand_as(errors), targets.unsqueeze(1).expand_as(errors), reduction="none", delta=kappa)
    weight = (taus.view(1, -1, 1) - (errors.detach() < 0).to(errors.dtype)).abs()
    return (weight * huber / kappa).sum(1).mean()


def td_loss(
    predicted: torch.Tensor, next_values: torch.Tensor, batch: Batch, discount: float, kappa: float
) -> torch.Tensor:
    """Huber TD loss of the taken actions' values ``[B]`` (or quantiles ``[B, N]``) against
    ``r + discount * (1 - terminal) * next_values``."""
    shape = (-1,) + (1,) * (next_values.dim() - 1)
    targets = batch.rewards.view(shape) + discount * (1.0 - batch.terminals.view(shape)) * next_values
    if predicted.dim() == 2:
        return quantile_huber_loss(predicted, targets, kappa)
    return F.huber_loss(predicted, targets, delta=kappa)


def conservative_penalty(values: torch.Tensor, taken: torch.Tensor) -> torch.Tensor:
    """CQL(H) for discrete actions: ``logsumexp_a Q(s, a) - Q(s, a_data)`` from the values ``[B, n]`` and
    the data actions' values ``taken`` ``[B]``, averaged over the batch."""
    return (torch.logsumexp(values, dim=-1) - taken).mean()


def epsilon_greedy(greedy: torch.Tensor, n_actions: int, epsilon: float) -> torch.Tensor:
    """Each action replaced by a uniformly random one with probability ``epsilon``."""
    if epsilon <= 0.0:
        return greedy
    random_actions = torch.randint(n_actions, greedy.shape, device=greedy.device)
    explore = torch.rand(greedy.shape, device=greedy.device) < epsilon
    return torch.where(explore, random_actions, greedy)


def linear_epsilon(config, num_updates: int) -> float:
    if config.exploration_steps <= 0:
        return config.exploration_final
    progress = min(num_updates / config.exploration_steps, 1.0)
    return config.exploration_initial + progress * (config.exploration_final - config.exploration_initial)


@register("dqn", paper="Mnih et al. 2015, DQN", action_type="discrete", online=True)
class DQN(Algorithm):
    Config = DQNConfig

    def __init__(self, observation_space, action_space, config: DQNConfig) -> None:
        super().__init__(observation_space, action_space, config)
        self.n_actions = int(action_space.n)
        self.q = DiscreteQNetwork(
            make_trunk(self.encoder, config),
            self.n_actions,
            head_widths(config, self.encoder),
            quantiles=config.quantiles,
            activation_name=config.activation,
        )
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.optimizers = {"q": adam(self.q.parameters(), config.lr)}
        self._target_pairs = parameter_lists(self.q_target, self.q)

    def next_values(self, next_observations) -> torch.Tensor:
        """The target network's value ``[B]`` (quantiles ``[B, N]``) of the greedy next action."""
        with torch.no_grad():
            target = self.q_target(next_observations)[0]
            greedy_from = self.q.values(next_observations)[0] if self.config.double_q else _expected(target)
            return chosen(target, greedy_from.argmax(dim=-1))

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        observations = self.encoder(batch.observations)
        next_values = self.next_values(self.encoder(batch.next_observations))
        predicted = self.q(observations)[0]  # [B, n] or [B, n, N]
        taken = chosen(predicted, batch.actions)  # [B] or [B, N]
        loss = td_loss(taken, next_values, batch, cfg.discount, cfg.huber_kappa)
        metrics = {"td_loss": loss.detach()}
        values, taken_values = _expected(predicted), (taken.mean(-1) if taken.dim() == 2 else taken)  # expected values
        if cfg.cql_alpha > 0.0:
            penalty = conservative_penalty(values, taken_values)
            loss = loss + cfg.cql_alpha * penalty
            metrics["cql_penalty"] = penalty.detach()
        step(self.optimizers["q"], loss, cfg.max_grad_norm)
        self.num_updates += 1
        if self.num_updates % cfg.target_update_interval == 0:
            soft_update(*self._target_pairs, 1.0)
        metrics["q_mean"] = taken_values.detach().mean()
        return metrics

    @torch.no_grad()
    def act(self, observations, deterministic: bool = True) -> torch.Tensor:
        greedy = self.q.values(self.encoder(observations))[0].argmax(dim=-1)
        if deterministic:
            return greedy
        return epsilon_greedy(greedy, self.n_actions, linear_epsilon(self.config, self.num_updates))


def _expected(values: torch.Tensor) -> torch.Tensor:
    """``[B, n]`` expected values from ``[B, n]`` values or ``[B, n, N]`` quantiles."""
    return values.mean(-1) if values.dim() == 3 else values


@register("double_dqn", paper="van Hasselt et al. 2016, Double DQN", action_type="discrete", online=True)
class DoubleDQN(DQN):
    Config = DoubleDQNConfig


@register("qr_dqn", paper="Dabney et al. 2018, QR-DQN", action_type="discrete", online=True)
class QRDQN(DQN):
    Config = QRDQNConfig


@register("discrete_cql", paper="Kumar et al. 2020, CQL(H) on a (QR-)DQN critic", action_type="discrete")
class DiscreteCQL(DQN):
    Config = DiscreteCQLConfig

