"""Online, hybrid and offline-to-online training through the one trainer."""

from __future__ import annotations

import csv
import json
import os
import signal

import gymnasium as gym
import numpy as np
import pytest
import torch

import offrl
from offrl.data import MixedSampler, ReplayBuffer, UniformSampler, load_dataset
from offrl.errors import OffrlError
from offrl.plugins import import_plugin
from offrl.train.trainer import _initialize_from, make_schedule
from tests.conftest import random_dataset

SMALL = {"hidden_dims": (32, 32)}
QUIET = {"progress": False, "tensorboard": False, "eval_every": 0, "eval_episodes": 2, "eval_envs": 2}


def algo_for(name, space_source, **overrides):
    return offrl.make_algo(name, space_source.observation_space, space_source.action_space, seed=0, **{**SMALL, **overrides})


def count_calls(algo):
    """Count the trainer's calls of each kind (the default update_offline calls update inside)."""
    counts = {"update": 0, "update_offline": 0}
    inside_offline = [False]
    update, update_offline = algo.update, algo.update_offline

    def counted_update(batch):
        counts["update"] += not inside_offline[0]
        return update(batch)

    def counted_update_offline(batch):
        counts["update_offline"] += 1
        inside_offline[0] = True
        try:
            return update_offline(batch)
        finally:
            inside_offline[0] = False

    algo.update, algo.update_offline = counted_update, counted_update_offline
    return counts


def test_alf_schedule_counts_each_kind_of_update(pendulum_dataset, tmp_path):
    algo = algo_for("sac", pendulum_dataset)
    counts = count_calls(algo)
    result = offrl.train_online(
        algo, "Pendulum-v1", dataset=pendulum_dataset, steps=100, rl_train_after_update_steps=30,
        rl_train_every_update_steps=3, run_dir=tmp_path / "r", **QUIET,
    )
    # RL updates at steps 30, 33, ..., 99; every other step is an offline update
    assert counts == {"update": 24, "update_offline": 76}
    assert (result.rl_updates, result.offline_updates) == (24, 76)
    assert result.env_steps == 24  # no warm-up after an offline phase; one transition per RL update
    config = json.loads((tmp_path / "r/config.json").read_text())
    assert config["mode"] == "hybrid" and config["schedule"]["rl_train_every_update_steps"] == 3


def test_schedule_utd_and_pure_offline(pendulum_dataset, tmp_path):
    algo = algo_for("sac", pendulum_dataset)
    result = offrl.train_online(
        algo, "Pendulum-v1", dataset=pendulum_dataset, steps=40, rl_train_after_update_steps=0, utd_ratio=4,
        warmup_steps=10, run_dir=tmp_path / "utd", **QUIET,
    )
    assert result.rl_updates == 40 and result.env_steps == 10 + 10  # warm-up, then one transition per 4 updates
    # rl_train_after_update_steps beyond the total: pure offline, the environment only evaluates
    algo = algo_for("sac", pendulum_dataset)
    counts = count_calls(algo)
    result = offrl.train_online(
        algo, "Pendulum-v1", dataset=pendulum_dataset, steps=30, rl_train_after_update_steps=1000, run_dir=tmp_path / "off", **QUIET,
    )
    assert counts["update"] == 0 and counts["update_offline"] == 30 and result.env_steps == 0


def test_schedule_resolution(pendulum_dataset):
    sac = algo_for("sac", pendulum_dataset)
    iql = algo_for("iql", pendulum_dataset)
    mode = lambda algo, **kw: make_schedule(algo, steps=100, **kw).mode  # noqa: E731
    assert mode(sac, dataset=None, env="Pendulum-v1") == "online"
    assert mode(sac, dataset=pendulum_dataset, env="Pendulum-v1") == "hybrid"
    assert mode(iql, dataset=pendulum_dataset, env="Pendulum-v1") == "offline"
    assert mode(sac, dataset=pendulum_dataset, env=None) == "offline"
    o2o = make_schedule(iql, dataset=pendulum_dataset, env="Pendulum-v1", steps=100, online_steps=50)
    assert (o2o.mode, o2o.rl_train_after_update_steps, o2o.total_steps, o2o.offline_ratio) == ("offline-to-online", 100, 150, None)
    assert make_schedule(sac, dataset=pendulum_dataset, env="Pendulum-v1", steps=10).offline_ratio == 0.5
    with pytest.raises(OffrlError, match="pass env"):
        make_schedule(sac, dataset=pendulum_dataset, env=None, steps=10, rl_train_after_update_steps=0)
    with pytest.raises(OffrlError, match="needs a dataset"):
        make_schedule(sac, dataset=None, env="Pendulum-v1", steps=10, rl_train_after_update_steps=5)


def _constant_buffer(size: int, reward: float) -> ReplayBuffer:
    buffer = ReplayBuffer(gym.spaces.Box(-np.inf, np.inf, (4,), np.float32), gym.spaces.Box(-1, 1, (2,), np.float32), size)
    buffer.add(observations=np.zeros((size, 4)), actions=np.zeros((size, 2)), rewards=np.full(size, reward),
               next_observations=np.zeros((size, 4)), terminals=np.zeros(size), timeouts=np.zeros(size))
    return buffer


@pytest.mark.parametrize("ratio, expected_offline", [(0.5, 128), (0.25, 64), (1.0, 256), (0.0, 0), (None, 192)])
def test_mixed_batches_hold_the_requested_ratio(ratio, expected_offline):
    ds = random_dataset(n=300)
    ds.rewards[:] = 0.0
    offline = UniformSampler(ds.to("cpu"), 256)
    sampler = MixedSampler(offline, _constant_buffer(100, 1.0), 256, offline_ratio=ratio, online_reward_scale=3.0)
    for _ in range(3):
        batch = sampler.sample()
        assert len(batch) == 256
        assert int((batch.rewards == 0).sum()) == expected_offline  # None: 300 / (300 + 100) of the rows
        assert torch.all(batch.rewards[batch.rewards != 0] == 3.0)  # online rows rescaled, dataset rows untouched


def test_sac_solves_pendulum_online(tmp_path):
    env = gym.make("Pendulum-v1")
    algo = offrl.make_algo("sac", offrl.spaces.as_float32(env.observation_space), env.action_space, seed=0)
    result = offrl.train_online(
        algo, "Pendulum-v1", steps=5000, warmup_steps=1000, eval_every=0, eval_episodes=10,
        run_dir=tmp_path / "sac", progress=False, tensorboard=False,
    )
    assert result.env_steps == 6000
    assert result.final_eval.mean_return > -250, result.final_eval.mean_return


def test_online_buffer_round_trips_into_offline_training(tmp_path):
    env = gym.make("Pendulum-v1")
    algo = offrl.make_algo("sac", offrl.spaces.as_float32(env.observation_space), env.action_space, seed=0, **SMALL)
    result = offrl.train_online(
        algo, "Pendulum-v1", steps=300, warmup_steps=200, num_envs=2, save_buffer=tmp_path / "buffer.hdf5",
        run_dir=tmp_path / "online", **QUIET,
    )
    recorded = load_dataset(tmp_path / "buffer.hdf5")
    assert len(recorded) == result.env_steps == 500
    assert recorded.metadata["env_id"] == "Pendulum-v1"
    # two env slots of 250 steps each: episodes of 200 steps, then the cut-off remainder of 50
    assert sorted(recorded.episode_lengths().tolist()) == [50, 50, 200, 200]
    assert not recorded.terminals.any() and recorded.timeouts.sum() == 4
    inside = np.flatnonzero(~recorded.timeouts)
    np.testing.assert_allclose(recorded.next_observations[inside[:-1]][:10], recorded.observations[inside[:-1] + 1][:10])
    bc = algo_for("bc", recorded)
    trained = offrl.train_offline(bc, recorded, steps=50, run_dir=tmp_path / "offline", **QUIET)
    assert trained.step == 50
    with pytest.raises(OffrlError, match="already exists"):
        offrl.train_online(algo_for("sac", recorded), "Pendulum-v1", steps=10, save_buffer=tmp_path / "buffer.hdf5",
                           run_dir=tmp_path / "again", **QUIET)


def test_offline_to_online_keeps_the_dataset_in_the_sampler(pendulum_dataset, tmp_path):
    algo = algo_for("iql", pendulum_dataset)
    counts = count_calls(algo)
    result = offrl.train_online(
        algo, "Pendulum-v1", dataset=pendulum_dataset, steps=100, online_steps=60, run_dir=tmp_path / "o2o", **QUIET
    )
    assert counts == {"update_offline": 100, "update": 60}
    assert result.env_steps == 60 and result.step == 160
    config = json.loads((tmp_path / "o2o/config.json").read_text())
    assert config["mode"] == "offline-to-online" and config["schedule"]["offline_ratio"] is None
    assert config["reward_scale"] != 1.0  # IQL's locomotion reward scaling, applied to online rows too


def test_init_from_loads_a_finished_run(pendulum_dataset, tmp_path):
    first = algo_for("iql", pendulum_dataset)
    offrl.train_offline(first, pendulum_dataset, steps=20, run_dir=tmp_path / "offline", **QUIET)
    second = algo_for("iql", pendulum_dataset)
    assert not torch.equal(second.actor.net[0].weight, first.actor.net[0].weight)
    scale = _initialize_from(second, tmp_path / "offline")
    assert torch.equal(second.actor.net[0].weight, first.actor.net[0].weight)
    assert scale == json.loads((tmp_path / "offline/config.json").read_text())["reward_scale"]
    result = offrl.train_online(second, "Pendulum-v1", steps=20, init_from=tmp_path / "offline", warmup_steps=5,
                                run_dir=tmp_path / "online", **QUIET)
    assert result.step == 20 and second.num_updates == 20


def test_custom_hybrid_algorithm_example(pendulum_dataset, tmp_path):
    import_plugin("examples/hybrid_sac_bc.py")
    algo = algo_for("sac_bc", pendulum_dataset)
    counts = count_calls(algo)
    offrl.train_online(
        algo, "Pendulum-v1", dataset=pendulum_dataset, steps=40, rl_train_after_update_steps=20,
        rl_train_every_update_steps=2, log_every=10, run_dir=tmp_path / "r", **QUIET,
    )
    assert counts == {"update_offline": 30, "update": 10}
    with open(tmp_path / "r/metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["bc_nll"] != "" and float(rows[0]["bc_nll"]) > 0  # the behaviour-cloning term ran offline


def test_online_run_resumes_with_its_replay_buffer(tmp_path):
    env = gym.make("Pendulum-v1")
    spaces = (offrl.spaces.as_float32(env.observation_space), env.action_space)
    algo = offrl.make_algo("sac", *spaces, seed=0, **SMALL)
    original = algo.update
    calls = {"n": 0}

    def update(batch):
        calls["n"] += 1
        if calls["n"] == 150:
            os.kill(os.getpid(), signal.SIGINT)
        return original(batch)

    algo.update = update
    settings = dict(steps=300, warmup_steps=100, save_buffer=tmp_path / "buffer.hdf5", run_dir=tmp_path / "run", **QUIET)
    result = offrl.train_online(algo, "Pendulum-v1", **settings)
    assert result.interrupted and result.step == 150 and result.env_steps == 250
    assert (tmp_path / "run/checkpoints/replay_buffer.safetensors").is_file()
    assert not (tmp_path / "buffer.hdf5").exists()  # written only when training completes
    resumed = offrl.make_algo("sac", *spaces, seed=0, **SMALL)
    result = offrl.train_online(resumed, "Pendulum-v1", resume=True, **settings)
    assert result.step == 300 and result.env_steps == 400
    recorded = load_dataset(tmp_path / "buffer.hdf5")
    assert len(recorded) == 400
    # the episode in progress at the interruption ends there; the environment restarted
    assert recorded.episode_lengths().tolist() == [200, 50, 150]


def test_a_saved_buffer_loads_into_a_larger_one_oldest_first():
    spaces = (gym.spaces.Box(-np.inf, np.inf, (1,), np.float32), gym.spaces.Box(-1, 1, (1,), np.float32))
    small = ReplayBuffer(*spaces, 4)
    for value in range(6):  # wraps: holds 2, 3, 4, 5 with the oldest (2) at row 2
        small.add(observations=np.full((1, 1), value), actions=np.zeros((1, 1)), rewards=np.full(1, value),
                  next_observations=np.zeros((1, 1)), terminals=np.zeros(1), timeouts=np.zeros(1))
    large = ReplayBuffer(*spaces, 8)
    large.load_state_dict(small.state_dict())
    assert large.size == 4 and large.position == 4
    np.testing.assert_array_equal(large.storage.rewards[:4].numpy(), [2, 3, 4, 5])
    large.add(observations=np.full((1, 1), 6), actions=np.zeros((1, 1)), rewards=np.full(1, 6.0),
              next_observations=np.zeros((1, 1)), terminals=np.zeros(1), timeouts=np.zeros(1))
    np.testing.assert_array_equal(large.storage.rewards[:5].numpy(), [2, 3, 4, 5, 6])
    same = ReplayBuffer(*spaces, 4)
    same.load_state_dict(small.state_dict())
    assert same.position == small.position and torch.equal(same.storage.rewards, small.storage.rewards)


@pytest.mark.parametrize(
    "options, message",
    [({"rl_train_after_update_steps": -3}, "rl_train_after_update_steps must be >= 0"),
     ({"utd_ratio": float("nan")}, "utd_ratio must be a positive finite number"),
     ({"utd_ratio": float("inf")}, "utd_ratio must be a positive finite number"),
     ({"offline_ratio": 1.5}, r"offline_ratio must be a number in \[0, 1\]"),
     ({"offline_ratio": "half"}, r"offline_ratio must be a number in \[0, 1\]"),
     ({"rl_train_every_update_steps": 1.5}, "rl_train_every_update_steps must be an integer")],
)
def test_schedule_values_out_of_range_are_refused(pendulum_dataset, options, message):
    sac = offrl.make_algo("sac", pendulum_dataset.observation_space, pendulum_dataset.action_space, hidden_dims=(16,))
    with pytest.raises(OffrlError, match=message):
        make_schedule(sac, dataset=pendulum_dataset, env="Pendulum-v1", steps=100, **options)
