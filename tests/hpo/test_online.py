"""Online and hybrid searches: members step environments into one shared replay buffer and learn from it."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import safetensors.torch
import torch

from offrl.errors import CheckpointError, ConfigError
from offrl.hpo import Mutations, Population, train_population
from offrl.hpo import backends

TINY = {"hidden_dims": (32, 32), "batch_size": 64}
MIXED = Mutations(no_mutation=0.2, architecture=0.3, parameters=0.2, rl_hp=0.3)


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def online_search(run_dir, *, dataset=None, size=3, evo=100, steps=200, **options):
    population = Population(
        "sac", dataset, size=size, env="Pendulum-v1", online=True, config=options.pop("config", TINY), warmup_steps=30,
        collect_every=50, eval_episodes=2, eval_envs=2, initial="sample", **options.pop("population", {}),
    )
    return train_population(population, evo_steps=evo, max_steps=steps, run_dir=run_dir, progress=False, mutations=MIXED, **options)


def test_online_search_learns_pendulum(tmp_path):
    population = Population(
        "sac", None, size=2, env="Pendulum-v1", online=True, warmup_steps=1000, eval_episodes=5, eval_envs=5,
        config={"hidden_dims": (128, 128)},
    )
    result = train_population(population, evo_steps=1000, max_steps=4000, run_dir=tmp_path / "s", progress=False)
    rows = read_rows(result.lineage)
    first = [float(r["fitness"]) for r in rows if r["generation"] == "0"]
    # a random policy scores about -1200 on Pendulum; after 1,000 steps the members still score below -1400
    assert max(first) < -1000 and result.best_fitness > -400, (first, result.best_fitness)
    assert all(int(r["env_steps"]) == int(r["steps"]) for r in rows)  # utd_ratio 1: one transition per gradient step
    assert result.collect_seconds > 0


def test_every_member_adds_to_one_shared_buffer(tmp_path):
    result = online_search(tmp_path / "s", size=3, evo=100, steps=200)
    rows = read_rows(result.lineage)
    assert [int(r["env_steps"]) for r in rows] == [100] * 3 + [200] * 3
    assert all(r["train_return"] == "" for r in rows)  # 200-step episodes: none ended in the first 100 steps
    # the checkpoint of generation 1 holds the warmup (10 random transitions per member) and generation 0
    buffer = safetensors.torch.load_file(str(tmp_path / "s" / "generations" / "gen_000001" / "replay_buffer.safetensors"))
    env_ids = buffer["env_ids"].numpy()
    assert len(env_ids) == 3 * 10 + 3 * 100
    assert np.bincount(env_ids).tolist() == [110, 110, 110]
    assert buffer["observations"].shape == (330, 3) and np.isfinite(buffer["rewards"].numpy()).all()
    saved = json.loads((tmp_path / "s" / "search.json").read_text())
    assert saved["population"]["mode"] == "online" and saved["population"]["dataset"] is None
    # the buffer holds what the search can collect, not the default million rows
    assert saved["population"]["interaction"]["buffer_size"] < 2000
    elite = json.loads((result.elite_dir / "config.json").read_text())
    assert elite["mode"] == "online" and elite["train"]["env_steps"] == 200


def test_hybrid_search_mixes_the_dataset_into_every_batch(pendulum_dataset, tmp_path, monkeypatch):
    seen = []
    original = backends.LocalBackend.train

    def spy(self, steps, seeds):
        sampler = self.workers[0].sampler(seeds[0])
        seen.append((sampler.offline_rows(), sampler.batch_size, sampler.offline.size))
        return original(self, steps, seeds)

    monkeypatch.setattr(backends.LocalBackend, "train", spy)
    result = online_search(tmp_path / "h", dataset=pendulum_dataset, size=2, population={"offline_ratio": 0.25})
    assert seen[0] == (16, 64, len(pendulum_dataset))  # a quarter of each batch from the dataset
    saved = json.loads((tmp_path / "h" / "search.json").read_text())
    assert saved["population"]["mode"] == "hybrid" and saved["population"]["dataset"]["transitions"] == len(pendulum_dataset)
    assert int(read_rows(result.lineage)[-1]["env_steps"]) == 200


def test_offline_to_online_search_pretrains_on_the_dataset_then_interacts(pendulum_dataset, tmp_path, monkeypatch):
    methods = []
    original = backends.LocalBackend.train

    def spy(self, steps, seeds):
        methods.append((self.workers[0].update_method, type(self.workers[0].sampler(seeds[0])).__name__))
        return original(self, steps, seeds)

    monkeypatch.setattr(backends.LocalBackend, "train", spy)
    result = online_search(tmp_path / "o2o", dataset=pendulum_dataset, size=2, steps=300, population={"online_after": 100})
    # generation 0 offline (one call), generations 1 and 2 online (two pieces of 50 steps each)
    assert methods == [("update_offline", "UniformSampler")] + [("update", "MixedSampler")] * 4
    rows = read_rows(result.lineage)
    assert [int(r["env_steps"]) for r in rows] == [0, 0, 100, 100, 200, 200]
    saved = json.loads((tmp_path / "o2o" / "search.json").read_text())
    assert saved["population"]["mode"] == "offline-to-online"
    assert saved["population"]["interaction"]["offline_ratio"] is None  # the union, as offline-to-online training
    empty = safetensors.torch.load_file(str(tmp_path / "o2o" / "generations" / "gen_000001" / "replay_buffer.safetensors"))
    assert len(empty["rewards"]) == 0  # nothing collected before the first online generation
    monkeypatch.setattr(backends.LocalBackend, "train", original)
    resumed = online_search(tmp_path / "o2o", dataset=pendulum_dataset, size=2, steps=300, population={"online_after": 100}, resume=True)
    assert read_rows(resumed.lineage) == rows  # generation 2 again, from its checkpoint with the buffer


def test_online_resume_repeats_the_interrupted_generation_exactly(tmp_path, monkeypatch):
    straight = online_search(tmp_path / "straight", size=2, steps=300)
    calls = {"n": 0}
    original = backends.LocalBackend.train

    def interrupted(self, steps, seeds):
        calls["n"] += 1
        if calls["n"] == 6:  # the second piece of generation 2
            raise KeyboardInterrupt
        return original(self, steps, seeds)

    monkeypatch.setattr(backends.LocalBackend, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        online_search(tmp_path / "stopped", size=2, steps=300)
    monkeypatch.setattr(backends.LocalBackend, "train", original)
    resumed = online_search(tmp_path / "stopped", size=2, steps=300, resume=True)
    assert read_rows(resumed.lineage) == read_rows(straight.lineage)
    assert resumed.best_fitness == straight.best_fitness


def test_a_diverged_member_adds_nothing_to_the_shared_buffer_and_loses(tmp_path):
    population = Population("sac", None, size=2, env="Pendulum-v1", online=True, config=TINY, eval_episodes=2, eval_envs=2)
    runner = backends.LocalBackend(2, population.worker_options())
    for slot in range(2):
        runner.create(slot, {**TINY}, seed=slot, total_updates=100)
    runner.set_interacting(True)
    with torch.no_grad():
        next(runner.workers[1].algo.actor.parameters()).fill_(float("nan"))
    results = runner.collect(20, [0, 1], [0, 1])
    assert results[0][0] is not None and results[1] == (None, [])
    runner.add([rows for rows, _ in results])
    assert len(runner.workers[0].buffer) == 20 and torch.isfinite(runner.workers[0].buffer.storage.actions[:20]).all()
    fitness = runner.evaluate(seed=0, generation=0)
    assert np.isfinite(fitness[0]) and np.isnan(fitness[1])
    runner.close()


def test_online_search_errors(pendulum_dataset, tmp_path):
    with pytest.raises(ConfigError, match="give env"):
        Population("sac", None, size=2, online=True)
    with pytest.raises(ConfigError, match="learns online"):
        Population("sac", None, size=2, env="Pendulum-v1")
    with pytest.raises(ConfigError, match="never sample what the members collect"):
        Population("sac", pendulum_dataset, size=2, env="Pendulum-v1", online=True, offline_ratio=1.0)
    with pytest.raises(ConfigError, match="needs a dataset"):
        Population("sac", None, size=2, env="Pendulum-v1", online=True, online_after=100)
    with pytest.raises(ConfigError, match="stacks frames"):
        Population("dqn", None, size=2, env="CartPole-v1", online=True, config={"frame_stack": 4})
    online_search(tmp_path / "s", size=2, steps=100)
    offline = Population("sac", pendulum_dataset, size=2, env="Pendulum-v1", config=TINY)
    with pytest.raises(CheckpointError, match="trains online, not offline"):
        train_population(offline, evo_steps=100, max_steps=100, run_dir=tmp_path / "s", resume=True, progress=False)
