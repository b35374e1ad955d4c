"""Offline discrete algorithms, trained through the real trainer on noisy CartPole data, beat the data.

The behaviour policy (a scripted balancer with every other action uniformly
random) scores about 170 of CartPole's 500; the balancer alone scores 500.
Small networks, learning rate 1e-3 and target copies every 100 updates (the
Atari defaults, 6.25e-5 and 8,000, are for 10M+ frames).
"""

from __future__ import annotations

import pytest

import offrl
from tests.algos.test_learning import train_and_evaluate

MARGIN = 75.0
Q_LEARNING = {"lr": 1e-3, "batch_size": 64, "hidden_dims": (64, 64), "target_update_interval": 100}
SETTINGS = {
    "discrete_cql": (3000, Q_LEARNING),
    # the random half of the data gives the other action a relative probability of 1/3, above the default
    # threshold 0.3: BCQ would be plain DQN; 0.5 keeps it to the balancer's actions, as the method intends
    "discrete_bcq": (3000, {**Q_LEARNING, "threshold": 0.5}),
    "discrete_bc": (1500, {"hidden_dims": (64, 64)}),
    "discrete_iql": (2000, {"hidden_dims": (64, 64), "batch_size": 64}),
    "discrete_crr": (2000, {"hidden_dims": (64, 64), "batch_size": 64}),
    "discrete_dt": (2000, {"embed_dim": 64, "context_length": 10, "num_layers": 1, "batch_size": 64, "warmup_steps": 100,
                           "lr": 1e-3, "dropout": 0.0}),
}


def test_every_offline_discrete_algorithm_has_a_learning_test():
    offline = {cls.name for cls in offrl.list_algos() if not cls.online and cls.action_type == "discrete"}
    assert offline <= set(SETTINGS), offline - set(SETTINGS)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_policy_beats_the_noisy_behaviour_policy(name, cartpole_dataset, tmp_path):
    steps, overrides = SETTINGS[name]
    result, behaviour = train_and_evaluate(name, cartpole_dataset, "CartPole-v1", steps, overrides, eval_episodes=10, run_dir=tmp_path)
    assert result.final_eval.mean_return > behaviour + MARGIN, (name, result.final_eval.mean_return, behaviour)
