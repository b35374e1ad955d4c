"""One shared test run over every registered algorithm (d3rlpy's tester idea)."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

from offrl.algos import get_algo_class, list_algos, make_algo
from offrl.data import Dataset
from offrl.errors import CheckpointError, ConfigError, SpaceError
from offrl.train.checkpoint import load_algo, save_checkpoint
from offrl.train.run import make_offline_sampler
from tests.conftest import random_dataset

ALGOS = [cls.name for cls in list_algos()]
LOW, HIGH = np.array([0.0, -3.0], np.float32), np.array([1.0, 1.0], np.float32)  # asymmetric bounds


N_ACTIONS = 3


def dataset_for(name: str, *, dict_observations: bool = False) -> Dataset:
    cls = get_algo_class(name)
    ds = random_dataset(n=400, dict_observations=dict_observations)
    rng = np.random.default_rng(1)
    if cls.action_type == "discrete":
        ds.action_space = gym.spaces.Discrete(N_ACTIONS)
        ds.actions = rng.integers(0, N_ACTIONS, size=len(ds))
        return ds
    ds.action_space = gym.spaces.Box(LOW, HIGH, dtype=np.float32)
    ds.actions = rng.uniform(LOW, HIGH, size=(len(ds), 2)).astype(np.float32)
    return ds


def assert_valid_actions(actions: torch.Tensor, action_space: gym.Space, count: int) -> None:
    if isinstance(action_space, gym.spaces.Discrete):
        assert actions.shape == (count,) and actions.dtype == torch.int64
        assert torch.all(actions >= 0) and torch.all(actions < action_space.n)
        return
    assert actions.shape == (count, 2)
    assert torch.all(actions >= torch.as_tensor(LOW) - 1e-5) and torch.all(actions <= torch.as_tensor(HIGH) + 1e-5)


# small networks, and per-algorithm settings so four updates reach every phase of the update
SMALL = {"batch_size": 32, "hidden_dims": (32, 32), "vae_hidden_dims": (32, 32), "embed_dim": 16, "context_length": 5,
         "rnn_hidden_dim": 32, "seq_length": 5}
SMOKE = {"plas": {"vae_pretrain_steps": 2}, "cql": {"bc_steps": 1}, "dt": {"warmup_steps": 2}}


def build(name: str, ds: Dataset, seed: int = 0, **extra):
    cls = get_algo_class(name)
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    overrides = {k: v for k, v in {**SMALL, **SMOKE.get(name, {}), **extra}.items() if k in fields}
    algo = make_algo(name, ds.observation_space, ds.action_space, seed=seed, **overrides)
    algo.total_updates = 100
    sampler, _ = make_offline_sampler(algo, ds, seed=seed)
    return algo, sampler


def train_steps(algo, sampler, n: int) -> list[dict[str, float]]:
    return [{k: float(v) for k, v in algo.update(sampler.sample()).items()} for _ in range(n)]


@pytest.mark.parametrize("name", ALGOS)
def test_update_returns_finite_scalar_tensors_and_changes_weights(name):
    algo, sampler = build(name, dataset_for(name))
    before = {k: v.clone() for k, v in algo.state_dict().items()}
    for _ in range(4):
        metrics = algo.update(sampler.sample())
        assert metrics, "update must report at least one metric"
        for key, value in metrics.items():
            assert isinstance(value, torch.Tensor) and value.dim() == 0, key
            assert torch.isfinite(value), key
    assert algo.num_updates == 4
    changed = [k for k, v in algo.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "no weight changed after four updates"


@pytest.mark.parametrize("name", ALGOS)
def test_act_shapes_and_bounds(name):
    ds = dataset_for(name)
    algo, sampler = build(name, ds)
    train_steps(algo, sampler, 3)
    observations = torch.as_tensor(ds.observations[:17]) * 50  # far outside the data: bounds must still hold
    for deterministic in (True, False):
        assert_valid_actions(algo.act(observations, deterministic=deterministic), ds.action_space, 17)
    torch.testing.assert_close(algo.act(observations), algo.act(observations))


@pytest.mark.parametrize("name", ALGOS)
def test_dict_observations(name):
    ds = dataset_for(name, dict_observations=True)
    algo, sampler = build(name, ds)
    train_steps(algo, sampler, 2)
    batch = ds.to("cpu")
    assert_valid_actions(algo.act(batch.observations), ds.action_space, len(ds))


@pytest.mark.parametrize("name", ALGOS)
def test_save_load_round_trip_continues_identically(name, tmp_path):
    ds = dataset_for(name)
    algo, sampler = build(name, ds)
    train_steps(algo, sampler, 5)
    save_checkpoint(tmp_path, algo, step=5)
    loaded = load_algo(tmp_path)
    assert type(loaded) is type(algo) and loaded.num_updates == 5
    observations = torch.as_tensor(ds.observations[:8])
    torch.testing.assert_close(loaded.act(observations), algo.act(observations))
    # optimizer state came back too: the next update from the same batch and RNG is identical
    batch = sampler.sample()
    torch.manual_seed(3)
    algo.update(batch)
    torch.manual_seed(3)
    loaded.update(batch)
    for key, value in algo.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("name", ALGOS)
def test_same_seed_same_result(name):
    ds = dataset_for(name)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        algo, sampler = build(name, ds, seed=11)
        runs.append((train_steps(algo, sampler, 6), algo.state_dict()))
    assert runs[0][0] == runs[1][0]
    for key in runs[0][1]:
        assert torch.equal(runs[0][1][key], runs[1][1][key]), key
    other, _ = build(name, ds, seed=12)
    assert any(not torch.equal(v, other.state_dict()[k]) for k, v in runs[0][1].items())


@pytest.mark.parametrize("name", ALGOS)
def test_checkpoint_of_another_algorithm_is_refused(name, tmp_path):
    ds = dataset_for(name)
    algo, _ = build(name, ds)
    save_checkpoint(tmp_path, algo, step=0)
    other = next(n for n in ALGOS if n != name)
    with pytest.raises(CheckpointError, match=f"written by '{name}', not '{other}'"):
        load_algo(tmp_path, algo=other)


@pytest.mark.parametrize("name", [cls.name for cls in list_algos() if cls.batch_kind == "sequences"])
def test_sequence_models_take_one_frame_per_step(name):
    ds = dataset_for(name)
    with pytest.raises(ValueError, match=f"{name} takes one frame per step"):
        make_algo(name, ds.observation_space, ds.action_space, frame_stack=2)


@pytest.mark.parametrize("name", ALGOS)
def test_spaces_an_algorithm_cannot_take_are_one_clear_error(name):
    ds = dataset_for(name)
    wrong_actions = gym.spaces.Box(-1.0, 1.0, (2,), np.float32) if get_algo_class(name).action_type == "discrete" else gym.spaces.Discrete(3)
    with pytest.raises(SpaceError, match=f"{name} needs a (discrete|continuous)"):
        make_algo(name, ds.observation_space, wrong_actions)
    with pytest.raises(SpaceError, match=r"observation space Discrete\(16\) is not a Box"):
        make_algo(name, gym.spaces.Discrete(16), ds.action_space)


def test_settings_an_algorithm_refuses_are_a_config_error_naming_it():
    ds = dataset_for("bc_transformer")
    with pytest.raises(ConfigError, match="bc_transformer: embed_dim 10 is not divisible by num_heads 4"):
        make_algo("bc_transformer", ds.observation_space, ds.action_space, embed_dim=10, num_heads=4)
