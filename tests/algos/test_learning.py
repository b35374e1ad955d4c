"""Each algorithm, trained through the real trainer on noisy scripted Pendulum data, beats the data.

The behaviour policy (scripted controller + heavy noise) scores about -490;
the noise-free controller about -145. A policy that learned anything from
the data scores far above the behaviour.

The papers' settings are for 1M steps on MuJoCo; to learn Pendulum in a
couple of thousand steps on a CPU the tests use small networks (64x64) and,
where noted, faster learning rates. The algorithms are otherwise as
registered. Each setting was checked to clear the margin with room to spare.
"""

from __future__ import annotations

import pytest

import offrl

MARGIN = 150.0
SMALL = {"hidden_dims": (64, 64)}
FAST = {"actor_lr": 1e-3, "critic_lr": 1e-3}  # the papers' 3e-4 (CQL's actor: 3e-5) are tuned for 1M steps
CONSERVATIVE = {**SMALL, **FAST, "alpha_lr": 1e-3, "batch_size": 128, "num_sampled_actions": 5}
SETTINGS = {
    "bc": (2000, SMALL),
    "td3_bc": (3000, SMALL),
    "iql": (3000, {**SMALL, **FAST, "value_lr": 1e-3}),
    "awac": (2000, {**SMALL, **FAST}),
    "crr": (3000, {**SMALL, "target_update": "soft", "num_critics": 2}),  # d3rlpy's hard copies oscillate here
    "rebrac": (3000, {**SMALL, "batch_size": 256}),
    "bcq": (2000, {**SMALL, "vae_hidden_dims": (64, 64)}),
    "plas": (4000, {**SMALL, "vae_hidden_dims": (64, 64), "vae_pretrain_steps": 1500, "actor_lr": 1e-3, "vae_lr": 1e-3, "batch_size": 256}),
    "cql": (2000, CONSERVATIVE),
    "cal_ql": (2000, CONSERVATIVE),
    "sac_n": (3000, {**SMALL, **FAST, "num_critics": 5}),
    "edac": (3000, {**SMALL, **FAST, "num_critics": 5}),
    "dt": (3000, {"embed_dim": 64, "context_length": 5, "num_layers": 1, "batch_size": 64, "warmup_steps": 100, "lr": 1e-3, "dropout": 0.0}),
}


def test_every_offline_algorithm_has_a_learning_test():
    """Imitation algorithms have theirs on demonstration tasks (tests/algos/test_imitation.py)."""
    from tests.algos.test_imitation import SETTINGS as IMITATION

    offline = {cls.name for cls in offrl.list_algos() if not cls.online and cls.action_type == "continuous"}
    assert offline <= set(SETTINGS) | set(IMITATION), offline - set(SETTINGS) - set(IMITATION)


def train_and_evaluate(name: str, ds, env: str, steps: int, overrides: dict, *, eval_episodes: int, run_dir,
                       precision: str = "fp32"):
    """``name`` trained offline on ``ds`` through the real trainer and evaluated at the end; with the data's mean return."""
    algo = offrl.make_algo(name, ds.observation_space, ds.action_space, seed=0, **overrides)
    result = offrl.train_offline(
        algo, ds, env=env, steps=steps, eval_every=0, eval_episodes=eval_episodes, run_dir=run_dir, progress=False,
        tensorboard=False, precision=precision,
    )
    return result, float(ds.episode_returns().mean())


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_policy_beats_the_behaviour_policy(name, pendulum_learning_dataset, tmp_path):
    steps, overrides = SETTINGS[name]
    result, behaviour = train_and_evaluate(
        name, pendulum_learning_dataset, "Pendulum-v1", steps, overrides, eval_episodes=20, run_dir=tmp_path / name
    )
    assert result.final_eval.episodes == 20
    assert result.final_eval.mean_return > behaviour + MARGIN, (result.final_eval.mean_return, behaviour)


@pytest.mark.parametrize("name", ["td3_bc", "iql"])
def test_policy_trained_in_bf16_beats_the_behaviour_policy(name, pendulum_learning_dataset, tmp_path):
    """Mixed precision (bfloat16 hidden products) learns as the float32 runs above do, by the same margin."""
    steps, overrides = SETTINGS[name]
    result, behaviour = train_and_evaluate(
        name, pendulum_learning_dataset, "Pendulum-v1", steps, overrides, eval_episodes=20, run_dir=tmp_path / name,
        precision="bf16",
    )
    assert result.final_eval.mean_return > behaviour + MARGIN, (result.final_eval.mean_return, behaviour)
