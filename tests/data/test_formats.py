"""Each reader on the real on-disk layout, written here the way the original tools write it."""

from __future__ import annotations

import gymnasium as gym
import h5py
import numpy as np
import pytest

from offrl.data import Dataset, detect_format, load_dataset, save_dataset
from offrl.data.collect import collect
from offrl.errors import DatasetError
from tests.conftest import random_dataset


def write_d4rl(path, dataset: Dataset, *, next_observations: bool) -> None:
    """D4RL's layout: flat top-level columns, infos/*, metadata/* (as in d4rl's generation scripts)."""
    with h5py.File(path, "w") as f:
        f.create_dataset("observations", data=dataset.observations)
        f.create_dataset("actions", data=dataset.actions)
        f.create_dataset("rewards", data=dataset.rewards)
        f.create_dataset("terminals", data=dataset.terminals)
        f.create_dataset("timeouts", data=dataset.timeouts)
        if next_observations:
            f.create_dataset("next_observations", data=dataset.next_observations)
        f.create_dataset("infos/qpos", data=np.arange(len(dataset) * 2, dtype=np.float64).reshape(-1, 2))
        f.create_dataset("infos/action_log_probs", data=np.zeros(len(dataset), np.float32))
        f.create_dataset("metadata/algorithm", data=np.bytes_("SAC"))
        f.create_dataset("metadata/iteration", data=np.int64(1000))
        f.create_dataset("metadata/policy/fc0/weight", data=np.zeros((4, 4), np.float32))


@pytest.fixture(scope="module")
def hopper_random() -> Dataset:
    """Random Hopper-v5 episodes: they end in terminals (the hopper falls)."""
    return collect("Hopper-v5", lambda obs: np.zeros((len(obs), 3)), episodes=5, epsilon=1.0, seed=4)


def test_d4rl_with_next_observations_round_trips(tmp_path, pendulum_dataset):
    path = tmp_path / "pendulum.hdf5"
    write_d4rl(path, pendulum_dataset, next_observations=True)
    assert detect_format(path) == "d4rl"
    ds = load_dataset(path)
    assert len(ds) == len(pendulum_dataset)
    np.testing.assert_array_equal(ds.observations, pendulum_dataset.observations)
    np.testing.assert_array_equal(ds.next_observations, pendulum_dataset.next_observations)
    np.testing.assert_array_equal(ds.timeouts, pendulum_dataset.timeouts)
    assert ds.infos["qpos"].shape == (len(ds), 2)
    assert ds.metadata["d4rl/algorithm"] == "SAC" and ds.metadata["d4rl/iteration"] == 1000
    assert "d4rl/policy/fc0/weight" not in ds.metadata
    assert ds.metadata["format"] == "d4rl"


def test_d4rl_without_next_observations_never_trains_through_a_timeout(tmp_path, pendulum_dataset):
    path = tmp_path / "pendulum-nonext.hdf5"
    write_d4rl(path, pendulum_dataset, next_observations=False)
    ds = load_dataset(path)
    # one transition per episode (the one at the timeout) has no known next observation: dropped
    assert len(ds) == len(pendulum_dataset) - pendulum_dataset.num_episodes
    assert ds.num_episodes == pendulum_dataset.num_episodes
    assert ds.metadata["dropped_transitions"] == pendulum_dataset.num_episodes
    kept = ~pendulum_dataset.timeouts
    np.testing.assert_array_equal(ds.observations, pendulum_dataset.observations[kept])
    # every derived next observation is the true one
    np.testing.assert_array_equal(ds.next_observations, pendulum_dataset.next_observations[kept])
    np.testing.assert_array_equal(ds.infos["qpos"][:3], np.arange(6, dtype=np.float64).reshape(3, 2))
    # the row before each dropped timeout now ends its episode as a timeout, not a terminal
    assert ds.timeouts.sum() == pendulum_dataset.num_episodes and not ds.terminals.any()
    assert set(ds.episode_lengths()) == {199}


def test_d4rl_derivation_at_terminals(tmp_path, hopper_random):
    path = tmp_path / "hopper.hdf5"
    write_d4rl(path, hopper_random, next_observations=False)
    ds = load_dataset(path)
    # episodes end in terminals: nothing is dropped, and a terminal's next observation is never
    # taken from the next episode
    assert hopper_random.terminals.sum() == 5 and len(ds) == len(hopper_random)
    inside = ~hopper_random.terminals
    np.testing.assert_array_equal(ds.next_observations[inside], hopper_random.next_observations[inside])
    ends = np.flatnonzero(hopper_random.terminals)
    np.testing.assert_array_equal(ds.next_observations[ends], hopper_random.observations[ends])


def test_offrl_hdf5_round_trip_with_dict_observations_and_infos(tmp_path):
    ds = random_dataset(dict_observations=True)
    ds.infos["qpos"] = np.arange(len(ds), dtype=np.float64)
    ds.metadata["env_id"] = "Point-v0"
    path = save_dataset(ds, tmp_path / "d.hdf5")
    assert detect_format(path) == "offrl-hdf5"
    back = load_dataset(path)
    for key in ("position", "velocity"):
        np.testing.assert_array_equal(back.observations[key], ds.observations[key])
        np.testing.assert_array_equal(back.next_observations[key], ds.next_observations[key])
    np.testing.assert_array_equal(back.actions, ds.actions)
    np.testing.assert_array_equal(back.infos["qpos"], ds.infos["qpos"])
    assert back.observation_space == ds.observation_space
    assert back.action_space == ds.action_space
    assert back.metadata["env_id"] == "Point-v0"


def test_npz_round_trip_and_generic_npz(tmp_path, pendulum_dataset):
    path = save_dataset(pendulum_dataset, tmp_path / "p.npz")
    back = load_dataset(path)
    np.testing.assert_array_equal(back.next_observations, pendulum_dataset.next_observations)
    assert back.action_space == pendulum_dataset.action_space
    generic = tmp_path / "generic.npz"
    np.savez(
        generic,
        observations=pendulum_dataset.observations,
        actions=pendulum_dataset.actions,
        rewards=pendulum_dataset.rewards,
        terminals=pendulum_dataset.terminals,
        timeouts=pendulum_dataset.timeouts,
    )
    loaded = load_dataset(generic)
    assert len(loaded) == len(pendulum_dataset) - pendulum_dataset.num_episodes


def test_refuses_to_overwrite(tmp_path, pendulum_dataset):
    path = save_dataset(pendulum_dataset, tmp_path / "p.hdf5")
    before = path.read_bytes()
    with pytest.raises(Exception, match="already exists"):
        save_dataset(pendulum_dataset.subset([0]), path)
    assert path.read_bytes() == before


def _record_minari(tmp_path, monkeypatch, dataset_id: str, env_id: str, steps: int):
    minari = pytest.importorskip("minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    env = minari.DataCollector(gym.make(env_id), record_infos=False)
    recorded = {"obs": [], "actions": [], "rewards": []}
    obs, _ = env.reset(seed=7)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        action = rng.uniform(env.action_space.low, env.action_space.high).astype(np.float32)
        recorded["obs"].append(obs)
        recorded["actions"].append(action)
        obs, reward, terminated, truncated, _ = env.step(action)
        recorded["rewards"].append(reward)
        if terminated or truncated:
            obs, _ = env.reset()
    env.create_dataset(dataset_id=dataset_id, algorithm_name="uniform-random", author="offrl tests", author_email="t@example.com", code_permalink="https://example.com")
    env.close()
    return {k: np.asarray(v) for k, v in recorded.items()}


def test_minari_dataset_read_through_minari(tmp_path, monkeypatch):
    recorded = _record_minari(tmp_path, monkeypatch, "offrl/pendulum-random-v0", "Pendulum-v1", 450)
    root = tmp_path / "minari" / "offrl" / "pendulum-random-v0"
    for reference in (root, root / "data", root / "data" / "main_data.hdf5", "offrl/pendulum-random-v0"):
        assert detect_format(reference) == "minari"
        ds = load_dataset(reference)
        assert len(ds) == 450 and ds.num_episodes == 3
        np.testing.assert_allclose(ds.observations, recorded["obs"], rtol=1e-6)
        np.testing.assert_allclose(ds.actions, recorded["actions"], rtol=1e-6)
        np.testing.assert_allclose(ds.rewards, recorded["rewards"], rtol=1e-6)
        # the next observation of an episode's last step is Minari's stored final observation
        np.testing.assert_allclose(ds.next_observations[:199], recorded["obs"][1:200], rtol=1e-6)
        assert ds.timeouts.sum() == 3 and not ds.terminals.any()
        assert ds.metadata["env_id"] == "Pendulum-v1"


def test_minari_terminations(tmp_path, monkeypatch):
    _record_minari(tmp_path, monkeypatch, "offrl/hopper-random-v0", "Hopper-v5", 120)
    ds = load_dataset("offrl/hopper-random-v0")
    assert ds.terminals.sum() >= 1
    assert ds.observation_space.shape == (11,)


def test_the_format_comes_from_the_content_not_the_name(tmp_path, pendulum_dataset):
    hdf5_named_npz = save_dataset(pendulum_dataset, tmp_path / "d4rl.npz", format="d4rl")
    npz_named_hdf5 = tmp_path / "columns.hdf5"
    npz_named_hdf5.write_bytes(save_dataset(pendulum_dataset, tmp_path / "columns.npz").read_bytes())
    assert detect_format(hdf5_named_npz) == "d4rl"
    assert detect_format(npz_named_hdf5) == "npz"
    for path in (hdf5_named_npz, npz_named_hdf5):
        np.testing.assert_array_equal(load_dataset(path).observations, pendulum_dataset.observations)


def test_scalar_observations_round_trip_through_every_written_format(tmp_path):
    n = 40
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "scalar.hdf5", "w") as f:  # one number per state, stored [N]
        f["observations"] = rng.normal(size=n).astype(np.float32)
        f["actions"] = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
        f["rewards"] = rng.normal(size=n).astype(np.float32)
        f["terminals"] = np.zeros(n, bool)
        f["timeouts"] = np.arange(n) % 10 == 9
    dataset = load_dataset(tmp_path / "scalar.hdf5")
    assert dataset.observation_space.shape == ()
    for name in ("s.hdf5", "s.npz", "s.offrl"):
        back = load_dataset(save_dataset(dataset, tmp_path / name))
        assert back.observation_space == dataset.observation_space
        np.testing.assert_array_equal(np.asarray(back.observations), dataset.observations)


def test_looking_up_a_missing_path_creates_no_minari_root(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MINARI_DATASETS_PATH", raising=False)
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(tmp_path / "typo.hdf5")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "root"))
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset("typo.hdf5")
    assert not (tmp_path / "home").exists() and not (tmp_path / "root").exists()
