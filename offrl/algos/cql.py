"""Conservative Q-Learning: SAC whose critics pay for high values on actions the data does not hold.

Kumar et al. 2020, "Conservative Q-Learning for Offline Reinforcement
Learning" (CQL(H)), as its reference implementation and CORL run it on the
locomotion tasks: 10 uniformly random and 10 + 10 policy actions per state
with importance sampling, min-Q weight 10, policy learning rate 3e-5, three
hidden layers, orthogonal critics, no entropy in the backup. With
``lagrange`` the weight is tuned so the gap stays at ``target_action_gap``.

With ``mc_lower_bound`` (Cal-QL, ``cal_ql.py``) the Q-values of the policy's
actions in the regularizer are first raised to the Monte-Carlo return of the
data (Nakamoto et al. 2023).

All 3 x ``num_sampled_actions`` actions per state go through the critics in
one batched pass.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import torch
from torch import nn

from offrl.algos.base import Algorithm
from offrl.algos.common import adam, parameter_lists, soft_update, step, td_target
from offrl.algos.registry import register
from offrl.algos.sac import alpha_loss
from offrl.data.batch import Batch
from offrl.nn.critics import QEnsemble
from offrl.nn.encoders import EncoderConfig
from offrl.nn.heads import Distribution, TanhGaussianPolicy


@dataclasses.dataclass
class CQLConfig(EncoderConfig):
    discount: float = 0.99  # reward discount
    tau: float = 0.005  # target-critic Polyak rate
    actor_lr: float = 3e-5  # policy Adam learning rate (CQL's locomotion setting)
    critic_lr: float = 3e-4  # critic Adam learning rate
    alpha_lr: float = 3e-5  # SAC temperature learning rate
    init_alpha: float = 1.0  # initial SAC temperature
    learn_alpha: bool = True  # tune the SAC temperature to the target entropy
    target_entropy: float | None = None  # None: -action_dim
    backup_entropy: bool = False  # entropy bonus in the TD target (off in CQL's locomotion runs)
    hidden_dims: tuple[int, ...] = (256, 256, 256)  # actor and critic widths
    activation: str = "relu"  # hidden-layer activation
    num_critics: int = 2  # critic ensemble size
    orthogonal_init: bool = True  # orthogonal critic initialization, as the reference code
    cql_weight: float = 10.0  # alpha of CQL(H): weight of logsumexp Q - Q(data)
    num_sampled_actions: int = 10  # random, current-policy and next-policy actions per state, each
    importance_sampling: bool = True  # subtract the sampling log-densities inside the logsumexp
    temperature: float = 1.0  # temperature of the logsumexp
    lagrange: bool = False  # tune the CQL weight by dual gradient descent
    target_action_gap: float = -1.0  # the gap the Lagrange version enforces
    alpha_prime_lr: float = 3e-4  # learning rate of the Lagrange multiplier
    max_target_backup: bool = False  # target: max over sampled next actions instead of one sample
    bc_steps: int = 0  # behaviour-cloning policy steps at the start (AntMaze uses 100k)
    mc_lower_bound: bool = False  # Cal-QL: raise policy-action Q-values to the Monte-Carlo return
    batch_size: int = 256  # transitions per gradient step
    normalize_observations: bool = True  # standardize states with dataset statistics


def conservative_penalty(
    critic: QEnsemble,
    features: torch.Tensor,
    policy: Distribution,
    next_policy: Distribution,
    q_data: torch.Tensor,
    cfg: CQLConfig,
    lower_bound: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict]:
    """Per critic, ``T logsumexp(Q(s, a_i) / T) - Q(s, a_data)`` averaged over the batch: ``[E]``, with the
    policy's samples drawn from its distributions at the states (``policy``) and next states (``next_policy``)."""
    count = cfg.num_sampled_actions
    with torch.no_grad():
        current, current_log_prob = TanhGaussianPolicy.draw(policy, samples=count)
        following, following_log_prob = TanhGaussianPolicy.draw(next_policy, samples=count)
        random = torch.empty_like(current).uniform_(-1.0, 1.0)
    action_dim = current.shape[-1]
    q = critic(features, torch.cat([random, following, current], dim=1))  # [E, B, 3K], one pass
    q_random, q_policy = q[..., :count], q[..., count:]
    if lower_bound is not None:
        q_policy = torch.maximum(q_policy, lower_bound[None, :, None])
    if cfg.importance_sampling:
        random_density = math.log(0.5**action_dim)
        log_density = torch.cat([following_log_prob, current_log_prob], dim=1)
        logits = torch.cat([q_random - random_density, q_policy - log_density], dim=-1)
    else:
        logits = torch.cat([q_random, q_policy, q_data.unsqueeze(-1)], dim=-1)
    ood = torch.logsumexp(logits / cfg.temperature, dim=-1) * cfg.temperature
    gap = (ood - q_data).mean(dim=1)
    return gap, {"cql_gap": gap.detach().mean(), "q_random": q_random.detach().mean(), "q_policy": q_policy.detach().mean()}


@register("cql", paper="Kumar et al. 2020, Conservative Q-Learning for Offline Reinforcement Learning")
class CQL(Algorithm):
    Config = CQLConfig
    shared_trunk = True

    def __init__(self, observation_space, action_space, config: CQLConfig) -> None:
        super().__init__(observation_space, action_space, config)
        width = self.encoder.out_dim
        options = {"activation_name": config.activation}
        self.actor = TanhGaussianPolicy(width, self.action_dim, config.hidden_dims, last_layer_scale=1e-3, **options)
        self.critic = QEnsemble(
            width,
            self.action_dim,
            config.hidden_dims,
            ensemble_size=config.num_critics,
            init="orthogonal" if config.orthogonal_init else "default",
            last_layer_scale=1e-2 if config.orthogonal_init else None,
            **options,
        )
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(config.init_alpha)))
        self.log_alpha_prime = nn.Parameter(torch.tensor(0.0))
        self.target_entropy = -float(self.action_dim) if config.target_entropy is None else config.target_entropy
        self.optimizers = {
            "actor": adam(self.actor.parameters(), config.actor_lr),
            # the critic's loss trains the image trunk, when there is one
            "critic": adam([*self.critic.parameters(), *self.encoder.parameters()], config.critic_lr),
        }
        if config.learn_alpha:
            self.optimizers["alpha"] = adam([self.log_alpha], config.alpha_lr)
        if config.lagrange:
            self.optimizers["alpha_prime"] = adam([self.log_alpha_prime], config.alpha_prime_lr)
        self._critic_target = parameter_lists(self.critic_target, self.critic)

    def dataset_columns(self) -> dict:
        return {"mc_returns": self.config.discount} if self.config.mc_lower_bound else {}

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        features = self.encoder(batch.observations)
        with torch.no_grad():
            next_features = self.encoder(batch.next_observations)
        actions = self.action_scaler.normalize(batch.actions)
        alpha = self.log_alpha.exp().detach()

        # actor and temperature, against the critics before this step's update (as the reference code)
        # the actor runs once on the states and once on the next states; every sample below is drawn from those
        actor_features = features.detach()
        policy = self.actor(actor_features)
        new_actions, log_prob = self.actor.draw(policy)
        if self.num_updates < cfg.bc_steps:
            objective = self.actor.density(policy, actions)
        else:
            objective = self.critic(actor_features, new_actions, frozen=True).min(dim=0).values
        actor_loss = (alpha * log_prob - objective).mean()
        metrics = {"actor_loss": actor_loss.detach(), "entropy": -log_prob.detach().mean()}

        with torch.no_grad():
            next_policy = self.actor(next_features)
            if cfg.max_target_backup:
                next_actions, next_log_prob = self.actor.draw(next_policy, samples=cfg.num_sampled_actions)
                next_q = self.critic_target(next_features, next_actions).min(dim=0).values  # [B, K]
                next_q, best = next_q.max(dim=1)
                next_log_prob = next_log_prob.gather(1, best[:, None]).squeeze(1)
            else:
                next_actions, next_log_prob = self.actor.draw(next_policy)
                next_q = self.critic_target(next_features, next_actions).min(dim=0).values
            if cfg.backup_entropy:
                next_q = next_q - alpha * next_log_prob
            targets = td_target(batch.rewards, batch.terminals, cfg.discount, next_q)
        q_data = self.critic(features, actions)
        td_loss = (q_data - targets).pow(2).mean(dim=1).sum()
        lower_bound = None
        if cfg.mc_lower_bound:
            lower_bound = torch.nan_to_num(batch.mc_returns, nan=-torch.inf)  # online rows: no bound
        gap, penalty_metrics = conservative_penalty(self.critic, features, policy, next_policy, q_data, cfg, lower_bound)
        if cfg.lagrange:
            alpha_prime = self.log_alpha_prime.exp().clamp(0.0, 1e6)
            penalty = (alpha_prime.detach() * cfg.cql_weight * (gap - cfg.target_action_gap)).sum()
            prime_loss = -(alpha_prime * cfg.cql_weight * (gap.detach() - cfg.target_action_gap)).sum() * 0.5
            metrics["alpha_prime"] = alpha_prime.detach()
        else:
            penalty = cfg.cql_weight * gap.sum()
        critic_loss = td_loss + penalty

        if cfg.learn_alpha:
            loss, alpha_metrics = alpha_loss(self.log_alpha, log_prob.detach(), self.target_entropy)
            step(self.optimizers["alpha"], loss)
            metrics.update(alpha_metrics)
        step(self.optimizers["actor"], actor_loss)
        step(self.optimizers["critic"], critic_loss)
        if cfg.lagrange:
            step(self.optimizers["alpha_prime"], prime_loss)
        soft_update(*self._critic_target, cfg.tau)
        self.num_updates += 1
        metrics.update(penalty_metrics)
        metrics.update({"critic_loss": critic_loss.detach(), "td_loss": td_loss.detach(), "q_mean": q_data.detach().mean()})
        return metrics

    @torch.no_grad()
    def act(self, observations, deterministic: bool = True) -> torch.Tensor:
        features = self.encoder(observations)
        actions = self.actor.deterministic(features) if deterministic else self.actor.sample(features)[0]
        return self.action_scaler.denormalize(actions)
