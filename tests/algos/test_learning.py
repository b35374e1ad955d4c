"""Each algorithm, trained through the real trainer on noisy scripted Pendulum data, beats the data.

The behaviour policy (scripted controller + heavy noise) scores about -490;
the noise-free controller about -145. A policy that learned anything from
the data scores far above the behaviour.
"""

from __future__ import annotations

import pytest

import offrl

MARGIN = 150.0
STEPS = {"bc": 5000, "td3_bc": 5000, "iql": 5000}


@pytest.mark.parametrize("name", sorted(STEPS))
def test_policy_beats_the_behaviour_policy(name, pendulum_learning_dataset, tmp_path):
    ds = pendulum_learning_dataset
    algo = offrl.make_algo(name, ds.observation_space, ds.action_space, seed=0)
    result = offrl.train_offline(
        algo,
        ds,
        env="Pendulum-v1",
        steps=STEPS[name],
        eval_every=0,
        eval_episodes=20,
        run_dir=tmp_path / name,
        progress=False,
        tensorboard=False,
    )
    behaviour = ds.episode_returns().mean()
    assert result.final_eval.episodes == 20
    assert result.final_eval.mean_return > behaviour + MARGIN, (result.final_eval.mean_return, behaviour)
