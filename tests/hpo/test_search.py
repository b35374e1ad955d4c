"""The search loop: lineage, elitism, resume, the elite's run directory, batched members, data-only fitness."""

from __future__ import annotations

import csv
import json

import pytest
import torch

import offrl
from offrl.algos.registry import make_algo
from offrl.data.sampler import UniformSampler
from offrl.errors import CheckpointError, ConfigError, OffrlError
from offrl.hpo import HyperparameterSpace, Mutations, Population, TournamentSelection, train_population
from offrl.hpo import backends
from offrl.train.seed_group import StackedModel

SMALL = {"hidden_dims": (32, 32), "batch_size": 64}
MIXED = Mutations(no_mutation=0.2, architecture=0.3, parameters=0.2, rl_hp=0.3)


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def search(dataset, run_dir, *, algo="bc", size=4, steps=300, evo=100, env=None, **options):
    population = Population(algo, dataset, size=size, env=env, config=SMALL, eval_episodes=2, eval_envs=2,
                            space=options.pop("space", None), initial=options.pop("initial", "sample"), seed=options.pop("seed", 0))
    return train_population(population, evo_steps=evo, max_steps=steps, run_dir=run_dir, progress=False,
                            mutations=options.pop("mutations", MIXED), **options)


def test_lineage_is_consistent_and_elitism_keeps_the_best(pendulum_dataset, tmp_path):
    result = search(pendulum_dataset, tmp_path / "s", size=4, steps=500)
    rows = read_rows(result.lineage)
    assert result.generations == 5 and len(rows) == 20
    by_generation = {}
    for row in rows:
        by_generation.setdefault(int(row["generation"]), []).append(row)
    for generation, members in by_generation.items():
        assert all(int(r["steps"]) == 100 * (generation + 1) for r in members)
        assert sum(int(r["elite"]) for r in members) == 1
        if generation == 0:
            assert all(r["mutation"] == "initial" and r["parent"] == "" for r in members)
            continue
        previous = {r["member"]: r for r in by_generation[generation - 1]}
        assert all(r["parent"] in previous for r in members)  # every parent lived in the generation before
        best = max(previous.values(), key=lambda r: float(r["selection_fitness"]))
        elite = members[0]
        assert elite["mutation"] == "elite" and elite["parent"] == best["member"]  # the best goes on unchanged
        for column in ("lr", "batch_size", "hidden_dims"):
            assert elite[column] == best[column]
        for row in members[1:]:
            parent = previous[row["parent"]]
            if row["mutation"] in ("none",) or row["mutation"].startswith("parameters"):
                assert (row["lr"], row["batch_size"], row["hidden_dims"]) == (parent["lr"], parent["batch_size"], parent["hidden_dims"])
    assert {r["mutation"].split(":")[0] for r in rows} >= {"initial", "elite", "rl_hp"}
    assert result.plot is not None and result.plot.stat().st_size > 1000


def test_the_elite_is_a_run_directory_load_policy_and_eval_accept(pendulum_dataset, tmp_path):
    result = search(pendulum_dataset, tmp_path / "s", algo="td3_bc", size=3, steps=200, env="Pendulum-v1")
    config = json.loads((result.elite_dir / "config.json").read_text())
    assert config["algo"] == "td3_bc" and config["env"] == "Pendulum-v1"
    assert config["search"]["member"] == result.elite.id and config["search"]["fitness"] == pytest.approx(result.best_fitness)
    policy = offrl.load_policy(result.elite_dir)
    action = policy(pendulum_dataset.observations[0])
    assert action.shape == (1,) and -2.0 <= float(action[0]) <= 2.0
    assert len(list((result.elite_dir / "checkpoints").glob("step_*.json"))) == 1


def test_resume_after_an_interruption_repeats_the_interrupted_generation_exactly(pendulum_dataset, tmp_path, monkeypatch):
    straight = search(pendulum_dataset, tmp_path / "straight", size=3, steps=400)
    calls = {"n": 0}
    original = backends.LocalBackend.train

    def interrupted(self, steps, seeds):
        calls["n"] += 1
        if calls["n"] == 3:  # during generation 2
            raise KeyboardInterrupt
        return original(self, steps, seeds)

    monkeypatch.setattr(backends.LocalBackend, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        search(pendulum_dataset, tmp_path / "stopped", size=3, steps=400)
    monkeypatch.setattr(backends.LocalBackend, "train", original)
    assert max(int(r["generation"]) for r in read_rows(tmp_path / "stopped" / "lineage.csv")) == 1
    resumed = search(pendulum_dataset, tmp_path / "stopped", size=3, steps=400, resume=True)
    assert read_rows(resumed.lineage) == read_rows(straight.lineage)
    assert resumed.best_fitness == straight.best_fitness
    # a finished search resumed with a larger budget goes on from its last generation
    longer = search(pendulum_dataset, tmp_path / "straight", size=3, steps=500, resume=True)
    rows = read_rows(longer.lineage)
    assert rows[: 4 * 3 - 3] == read_rows(straight.lineage)[: 4 * 3 - 3] and max(int(r["generation"]) for r in rows) == 4


def test_resume_refuses_another_search_and_a_new_search_refuses_a_used_directory(pendulum_dataset, tmp_path):
    search(pendulum_dataset, tmp_path / "s", size=2, steps=100)
    with pytest.raises(CheckpointError, match="already holds a search"):
        search(pendulum_dataset, tmp_path / "s", size=2, steps=100)
    with pytest.raises(CheckpointError, match="not 3 bc"):
        search(pendulum_dataset, tmp_path / "s", size=3, steps=200, resume=True)
    with pytest.raises(CheckpointError, match="no generation checkpoint"):
        search(pendulum_dataset, tmp_path / "empty", size=2, steps=100, resume=True)


def test_without_an_environment_fitness_is_the_held_out_imitation_loss(pendulum_dataset, tmp_path):
    population = Population("bc", pendulum_dataset, size=2, config=SMALL, validation_fraction=0.2)
    assert population.fitness.kind == "validation"
    assert population.dataset.num_episodes + population.validation.num_episodes == pendulum_dataset.num_episodes
    assert population.validation.num_episodes == 6


def test_without_an_environment_other_algorithms_are_judged_by_fitted_q_evaluation(pendulum_dataset, tmp_path):
    population = Population("td3_bc", pendulum_dataset, size=2, config=SMALL, fqe_steps=200)
    assert population.fitness.kind == "fqe" and population.dataset is pendulum_dataset  # nothing held out
    result = train_population(population, evo_steps=50, max_steps=100, run_dir=tmp_path / "s", progress=False)
    fitness = [float(r["fitness"]) for r in read_rows(result.lineage)]
    # Pendulum's rewards lie in [-16.3, 0]: a discounted return estimate is negative and above -16.3 / (1 - 0.99)
    assert len(fitness) == 4 and all(-1630 < f < 0 for f in fitness)
    with pytest.raises(ConfigError, match="held-out demonstrations are for imitation algorithms"):
        Population("td3_bc", pendulum_dataset, size=2, validation=pendulum_dataset)


def test_search_finds_learning_rates_far_better_than_a_bad_default(pendulum_dataset, tmp_path):
    """The base configuration's learning rate (1e-6) barely learns in 600 steps; the search space holds good ones."""
    population = Population("bc", pendulum_dataset, size=4, config={**SMALL, "lr": 1e-6}, initial="sample",
                            space=HyperparameterSpace.parse(["lr=1e-4:1e-2:log"]))
    result = train_population(population, evo_steps=200, max_steps=600, run_dir=tmp_path / "s", progress=False,
                              mutations=Mutations(no_mutation=0.5, architecture=0, parameters=0, rl_hp=0.5))
    rows = read_rows(result.lineage)
    base = float(rows[0]["fitness"])  # member 0 keeps the base configuration in generation 0
    assert rows[0]["lr"] == "1e-06"
    # measured: 0.37 against 0.53 (the data's action noise keeps the loss above about 0.35)
    assert -result.best_fitness < 0.8 * -base, (result.best_fitness, base)
    elite = [r for r in rows if r["elite"] == "1"][-1]
    assert float(elite["lr"]) >= 1e-4


def test_members_differing_only_in_learning_rate_train_as_one_batched_model(pendulum_dataset):
    data = pendulum_dataset.to("cpu")
    lrs = [1e-3, 3e-4, 3e-3]

    def build():
        return [make_algo("td3_bc", pendulum_dataset.observation_space, pendulum_dataset.action_space, seed=i,
                          **SMALL, actor_lr=lr, critic_lr=lr / 2) for i, lr in enumerate(lrs)]

    alone, together = build(), build()
    batches = [[UniformSampler(data, 64, seed=10 * i + s).sample() for i in range(3)] for s in range(5)]
    for step in batches:  # policy noise draws differ between the two paths: compare the actor's first updates
        for algo, batch in zip(alone, step):
            torch.manual_seed(0)
            algo.update(batch)
    model = StackedModel(together)
    torch.manual_seed(0)
    for step in batches:
        model.update("update", step)
    for a, b in zip(alone, together):
        assert b.optimizers["actor"].param_groups[0]["lr"] == a.optimizers["actor"].param_groups[0]["lr"]
        for (name, p), q in zip(a.named_parameters(), b.parameters()):
            if name.startswith("actor."):
                torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=name)


def test_batched_population_groups_matching_members(pendulum_dataset, tmp_path):
    population = Population("td3_bc", pendulum_dataset, size=4, env="Pendulum-v1", config=SMALL, eval_episodes=2, eval_envs=2)
    runner = backends.LocalBackend(4, population.worker_options())
    for slot, lr in enumerate([1e-3, 3e-4, 1e-3, 1e-3]):
        runner.create(slot, {**SMALL, "actor_lr": lr}, seed=slot, total_updates=100)
    runner.workers[3].mutate(__import__("offrl.hpo.mutation", fromlist=["Mutation"]).Mutation("rl_hp", "", {**runner.workers[3].config(), "alpha": 3.0}, 0))
    assert backends.cohorts(runner.workers) == [[0, 1, 2], [3]]
    metrics = runner.train(20, [0, 1, 2, 3])
    assert runner.last_cohorts == [[0, 1, 2], [3]] and all("critic_loss" in m for m in metrics)
    assert all(w.algo.num_updates == 20 for w in runner.workers)


def test_bad_loop_settings_are_clear_errors(pendulum_dataset, tmp_path):
    with pytest.raises(ConfigError, match="evo_steps <= max_steps"):
        search(pendulum_dataset, tmp_path / "a", steps=50, evo=100)
    with pytest.raises(ConfigError, match="larger than the population"):
        search(pendulum_dataset, tmp_path / "b", size=2, tournament=TournamentSelection(tournament_size=3))
    with pytest.raises(ConfigError, match="at least 2 members"):
        Population("bc", pendulum_dataset, size=1)


def test_a_bf16_population_steps_in_bf16_batched_and_alone(pendulum_dataset):
    population = Population("td3_bc", pendulum_dataset, size=4, env="Pendulum-v1", config=SMALL, eval_episodes=2, eval_envs=2,
                            precision="bf16")
    runner = backends.LocalBackend(4, population.worker_options())
    for slot, alpha in enumerate([2.5, 2.5, 2.5, 3.0]):  # the last one alone: another configuration
        runner.create(slot, {**SMALL, "alpha": alpha}, seed=slot, total_updates=100)
    hidden = {slot: set() for slot in range(4)}
    for slot, worker in enumerate(runner.workers):
        worker.algo.critic.net.layers[0].register_forward_hook(lambda module, args, out, slot=slot: hidden[slot].add(out.dtype))
    runner.train(5, [0, 1, 2, 3])
    assert runner.last_cohorts == [[0, 1, 2], [3]]
    assert hidden[0] == hidden[3] == {torch.bfloat16}  # the stacked model runs the first member's modules
    assert all(p.dtype == torch.float32 for w in runner.workers for p in w.algo.parameters())
    with pytest.raises(offrl.OffrlError, match="precision must be one of fp32, bf16"):
        Population("td3_bc", pendulum_dataset, size=2, env="Pendulum-v1", precision="fp8")


def test_a_search_checks_its_environment_and_judging_before_training(pendulum_dataset, tmp_path):
    with pytest.raises(OffrlError, match=r"environment CartPole-v1 has observations of shape \(4,\), but the dataset"):
        Population("td3_bc", pendulum_dataset, size=2, env="CartPole-v1")
    with pytest.raises(ConfigError, match=r"must be in \(0, 1\), not 1.5"):
        Population("bc", pendulum_dataset, size=2, validation_fraction=1.5)


def test_a_search_that_fails_before_its_first_generation_can_be_started_again(pendulum_dataset, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no members")

    monkeypatch.setattr(backends.LocalBackend, "create", broken)
    with pytest.raises(RuntimeError, match="no members"):
        search(pendulum_dataset, tmp_path / "s", size=2, steps=100, evo=100)
    assert not (tmp_path / "s" / "search.json").exists()
    monkeypatch.undo()
    search(pendulum_dataset, tmp_path / "s", size=2, steps=100, evo=100)
    assert (tmp_path / "s" / "search.json").exists()


def test_a_search_extended_with_more_steps_stretches_learning_rate_schedules(pendulum_dataset, tmp_path):
    search(pendulum_dataset, tmp_path / "s", algo="iql", size=2, steps=60, evo=30, env="Pendulum-v1")
    result = search(pendulum_dataset, tmp_path / "s", algo="iql", size=2, steps=90, evo=30, env="Pendulum-v1", resume=True)
    elite = json.loads(sorted((result.elite_dir / "checkpoints").glob("step_*.json"))[-1].read_text())
    # IQL's actor follows a cosine schedule over total_updates: kept at 60 it would train at learning rate 0 past step 60
    assert elite["num_updates"] == 90 and elite["total_updates"] == 90
