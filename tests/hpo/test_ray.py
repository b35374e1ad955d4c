"""The Ray backend on a local Ray instance with 2 CPUs: the same search as in process."""

from __future__ import annotations

import csv

import pytest
import safetensors.torch
import torch

from offrl.hpo import Mutations, Population, train_population

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_ray_members_make_the_same_selections_as_in_process(local_ray, pendulum_dataset, tmp_path):
    results = {}
    for backend in ("ray", "local"):
        population = Population("bc", pendulum_dataset, size=4, config={"hidden_dims": (32, 32), "batch_size": 64}, initial="sample")
        results[backend] = train_population(
            population, evo_steps=100, max_steps=300, run_dir=tmp_path / backend, backend=backend, batched=False, progress=False,
            mutations=Mutations(no_mutation=0.2, architecture=0.3, parameters=0.2, rl_hp=0.3),
        )
    on_ray, in_process = rows(results["ray"].lineage), rows(results["local"].lineage)
    assert len(on_ray) == 12
    for a, b in zip(on_ray, in_process):
        assert {k: v for k, v in a.items() if "fitness" not in k} == {k: v for k, v in b.items() if "fitness" not in k}
        assert float(a["fitness"]) == pytest.approx(float(b["fitness"]), rel=1e-5)
    assert results["ray"].elite.id == results["local"].elite.id
    assert (results["ray"].elite_dir / "checkpoints").is_dir()


def test_online_ray_members_share_the_buffer_as_in_process(local_ray, tmp_path):
    """Each actor's replica of the shared buffer gets every member's transitions in the same order as the one
    buffer in process: the same transitions, selections and fitness."""
    results = {}
    for backend in ("ray", "local"):
        population = Population(
            "sac", None, size=2, env="Pendulum-v1", online=True, warmup_steps=20, collect_every=50,
            config={"hidden_dims": (32, 32), "batch_size": 64}, initial="sample", eval_episodes=2, eval_envs=2,
        )
        results[backend] = train_population(
            population, evo_steps=100, max_steps=200, run_dir=tmp_path / backend, backend=backend, batched=False, progress=False,
            mutations=Mutations(no_mutation=0.2, architecture=0.3, parameters=0.2, rl_hp=0.3),
        )
    on_ray, in_process = rows(results["ray"].lineage), rows(results["local"].lineage)
    assert len(on_ray) == 4 and on_ray[-1]["env_steps"] == "200"
    for a, b in zip(on_ray, in_process):
        assert {k: v for k, v in a.items() if "fitness" not in k} == {k: v for k, v in b.items() if "fitness" not in k}
        assert float(a["fitness"]) == pytest.approx(float(b["fitness"]), rel=1e-5)
    buffers = [
        safetensors.torch.load_file(str(tmp_path / backend / "generations" / "gen_000001" / "replay_buffer.safetensors"))
        for backend in ("ray", "local")
    ]
    assert torch.equal(buffers[0]["observations"], buffers[1]["observations"]) and len(buffers[0]["rewards"]) == 220
