from __future__ import annotations

import h5py
import numpy as np
import pytest

from offrl.data import load_dataset
from offrl.data.collect import collect, controller_policy
from offrl.errors import OffrlError
from offrl.zoo.pendulum import energy_pump


def single_observation_controller(observation):
    """A controller written for one observation at a time."""
    return energy_pump(observation[None])[0]


def test_steps_mode_records_exactly_and_cuts_the_last_episode():
    ds = collect("Pendulum-v1", energy_pump, steps=450, num_envs=1, seed=0)
    assert len(ds) == 450
    assert ds.episode_lengths().tolist() == [200, 200, 50]
    assert ds.timeouts.sum() == 3 and ds.timeouts[-1] and not ds.terminals.any()
    np.testing.assert_array_equal(ds.next_observations[:199], ds.observations[1:200])


def test_terminals_and_true_final_observations_on_hopper():
    ds = collect("Hopper-v5", controller_policy("random", "Hopper-v5", seed=1), episodes=4, num_envs=2, seed=1)
    assert ds.terminals.sum() == 4 and ds.num_episodes == 4
    ends = np.flatnonzero(ds.terminals)
    # the last transition of an episode keeps the real final observation, not the next reset
    assert not np.allclose(ds.next_observations[ends[0]], ds.observations[ends[0] + 1])


def test_noise_and_epsilon_change_actions_within_bounds():
    clean = collect("Pendulum-v1", energy_pump, steps=400, seed=2)
    noisy = collect("Pendulum-v1", energy_pump, steps=400, seed=2, noise=0.5, epsilon=0.3)
    assert np.abs(noisy.actions).max() <= 2.0
    assert noisy.episode_returns().mean() < clean.episode_returns().mean()


def test_controller_specs(tmp_path):
    batch = np.random.default_rng(0).normal(size=(3, 3)).astype(np.float32)
    by_module = controller_policy("offrl.zoo.pendulum:energy_pump", "Pendulum-v1")
    np.testing.assert_allclose(by_module(batch), energy_pump(batch))
    per_row = controller_policy("tests.data.test_collect:single_observation_controller", "Pendulum-v1")
    np.testing.assert_allclose(per_row(batch), energy_pump(batch))
    (tmp_path / "ctrl.py").write_text("import numpy as np\ndef push(obs):\n    return np.ones((len(obs), 1))\n")
    assert controller_policy(f"{tmp_path / 'ctrl.py'}:push", "Pendulum-v1")(batch).shape == (3, 1)
    assert controller_policy("random", "Pendulum-v1")(batch).shape == (3, 1)
    with pytest.raises(OffrlError, match="module:function"):
        controller_policy("no_such_run_or_module", "Pendulum-v1")
    with pytest.raises(OffrlError, match="no attribute"):
        controller_policy("offrl.zoo.pendulum:nothing", "Pendulum-v1")


def test_collected_d4rl_file_layout(tmp_path):
    from offrl.data import save_dataset

    ds = collect("Pendulum-v1", energy_pump, steps=300, seed=0)
    path = save_dataset(ds, tmp_path / "c.hdf5", format="d4rl")
    with h5py.File(path) as f:
        assert {"observations", "actions", "rewards", "terminals", "timeouts", "next_observations"} <= set(f)
        assert "offrl_format" not in f.attrs
    back = load_dataset(path)
    assert back.metadata["format"] == "d4rl" and back.action_space == ds.action_space
    np.testing.assert_array_equal(back.timeouts, ds.timeouts)


def test_controllers_for_one_observation_or_a_batch_on_one_or_several_environments():
    cart = collect("CartPole-v1", controller_policy("tests.data.test_collect:cart_batch", "CartPole-v1"), steps=60, num_envs=1)
    np.testing.assert_array_equal(cart.actions, (cart.observations[:, 2] > 0).astype(np.int64))
    for spec in ("tests.data.test_collect:single_observation_controller", "offrl.zoo.pendulum:energy_pump"):
        for num_envs in (1, 2):
            ds = collect("Pendulum-v1", controller_policy(spec, "Pendulum-v1"), steps=60, num_envs=num_envs)
            np.testing.assert_allclose(ds.actions, energy_pump(ds.observations), atol=1e-6)
    wrong = controller_policy("tests.data.test_collect:three_numbers", "Pendulum-v1")
    with pytest.raises(OffrlError, match=r"three_numbers returned actions of shape \(2, 3\) for 2 observation"):
        wrong(np.zeros((2, 3), np.float32))


def test_noise_is_for_continuous_actions_and_rates_are_checked():
    with pytest.raises(OffrlError, match="noise perturbs continuous actions; CartPole-v1 has Discrete"):
        collect("CartPole-v1", cart_batch, steps=10, noise=0.5)
    with pytest.raises(OffrlError, match="epsilon in \\[0, 1\\]"):
        collect("Pendulum-v1", energy_pump, steps=10, epsilon=3.0)


def cart_batch(observations):
    """A CartPole controller for a batch: one integer action per row, shape [N]."""
    return (np.asarray(observations)[:, 2] > 0).astype(np.int64)


def three_numbers(observations):
    return np.zeros((len(observations), 3), np.float32)
