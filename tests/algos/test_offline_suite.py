"""Details of the offline suite that the shared smoke test cannot see: the pieces the papers define."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

import offrl
from offrl.algos.cql import CQLConfig, conservative_penalty
from offrl.algos.crr import CRRConfig, filtered_regression
from offrl.algos.sac import gradient_diversity
from offrl.nn.critics import QEnsemble
from offrl.nn.heads import GaussianPolicy, TanhGaussianPolicy

SMALL = {"hidden_dims": (32, 32)}
QUIET = {"progress": False, "tensorboard": False, "eval_every": 0, "eval_episodes": 2, "eval_envs": 2}


def networks(obs_dim=3, action_dim=2, members=2, seed=0):
    torch.manual_seed(seed)
    return QEnsemble(obs_dim, action_dim, (16, 16), ensemble_size=members), TanhGaussianPolicy(obs_dim, action_dim, (16, 16))


def test_cal_ql_bound_raises_policy_q_values_and_ignores_rows_without_a_return():
    critic, actor = networks()
    features, next_features = torch.randn(8, 3), torch.randn(8, 3)
    q_data = critic(features, torch.zeros(8, 2)).detach()
    cfg = CQLConfig(num_sampled_actions=4)
    policy, next_policy = actor(features), actor(next_features)
    torch.manual_seed(1)
    gap_free, free = conservative_penalty(critic, features, policy, next_policy, q_data, cfg)
    bound = torch.full((8,), 1e3)
    torch.manual_seed(1)
    gap_bounded, bounded = conservative_penalty(critic, features, policy, next_policy, q_data, cfg, bound)
    assert bounded["q_policy"].item() == pytest.approx(1e3)  # every policy-action value raised to the return
    assert (gap_bounded > gap_free + 100).all()
    torch.manual_seed(1)
    gap_none, _ = conservative_penalty(critic, features, policy, next_policy, q_data, cfg, torch.full((8,), -torch.inf))
    torch.testing.assert_close(gap_none, gap_free)  # an online row (no return-to-go) is not bounded


def test_crr_binary_filter_keeps_some_rows_and_drops_others():
    critic, _ = networks(members=1)
    actor = GaussianPolicy(3, 2, (16, 16), state_dependent_std=True)
    features, actions = torch.randn(64, 3), torch.rand(64, 2) * 2 - 1
    loss, metrics = filtered_regression(actor, critic, features, actions, CRRConfig(weight_type="binary", num_sampled_actions=8))
    assert 0.0 < metrics["weight_mean"].item() < 1.0
    assert torch.isfinite(loss)
    _, exp_metrics = filtered_regression(actor, critic, features, actions, CRRConfig(weight_type="exp", max_weight=20.0))
    assert exp_metrics["weight_mean"].item() > 0.0


def test_edac_diversity_penalty_is_high_for_identical_members():
    critic, _ = networks(members=4)
    features, actions = torch.randn(32, 3), torch.rand(32, 2)
    varied = gradient_diversity(critic, features, actions).item()
    with torch.no_grad():
        for parameter in critic.parameters():
            parameter.copy_(parameter[:1].expand_as(parameter))
    identical = gradient_diversity(critic, features, actions).item()
    assert identical == pytest.approx(critic.ensemble_size, rel=1e-4)  # all pairs cosine 1, summed per member
    assert varied < identical - 0.5


@pytest.mark.parametrize("name", ["cql", "cal_ql", "iql", "awac", "rebrac"])
def test_offline_then_online_through_the_hybrid_trainer(name, pendulum_dataset, tmp_path):
    algo = offrl.make_algo(name, pendulum_dataset.observation_space, pendulum_dataset.action_space, seed=0, **SMALL)
    result = offrl.train_online(
        algo, "Pendulum-v1", dataset=pendulum_dataset, steps=40, online_steps=40, log_every=10,
        run_dir=tmp_path / name, **QUIET,
    )
    assert result.offline_updates == 40 and result.rl_updates == 40 and result.env_steps == 40
    with open(tmp_path / name / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["step"]) for row in rows] == [10, 20, 30, 40, 50, 60, 70, 80]
    losses = [float(value) for row in rows for key, value in row.items() if key.endswith("loss") and value]
    assert losses and np.isfinite(losses).all()  # online rows (no return-to-go for Cal-QL) stay finite


def test_decision_transformer_rollout_conditions_on_the_remaining_return(pendulum_dataset):
    algo = offrl.make_algo("dt", pendulum_dataset.observation_space, pendulum_dataset.action_space, seed=0,
                           embed_dim=16, num_layers=1, context_length=4)
    algo.set_dataset_info({"max_return": -100.0, "mean_return": -500.0, "max_episode_length": 200, "reward_scale": 1.0})
    rollout = algo.rollout_policy(3)
    rollout.start_episode(None)
    observations = pendulum_dataset.observations[:3]
    for _ in range(6):  # longer than the context: the oldest steps roll out
        actions = rollout(observations)
        rollout.observe(np.array([-1.0, -2.0, -3.0]))
    assert actions.shape == (3, 1) and np.all(np.abs(actions) <= 2.0)
    torch.testing.assert_close(rollout.current_return, torch.tensor([-94.0, -88.0, -82.0]))
    assert rollout.mask.all() and rollout.timesteps[:, -1].tolist() == [5, 5, 5]
    rollout.start_episode(np.array([1]))
    assert rollout.current_return[1].item() == -100.0 and not rollout.mask[1].any() and rollout.mask[0].all()
