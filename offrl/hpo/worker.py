"""One population member where it lives: its algorithm, trained on the shared data and judged by the fitness.

The in-process backend holds these objects itself; the Ray backend runs each as
a Ray actor. Everything crossing between them and the search is plain data:
configs as dicts, states as tensors, :class:`~offrl.hpo.mutation.Mutation` plans.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from offrl.algos.base import Algorithm
from offrl.algos.registry import make_algo
from offrl.data.dataset import Dataset
from offrl.hpo.mutation import Mutation, apply_mutation
from offrl.train.evaluate import evaluate, make_vector_env
from offrl.data.sampler import UniformSampler
from offrl.train.run import MetricAccumulator, eval_seed, make_offline_sampler, prepare_training_data


@dataclasses.dataclass
class FitnessSpec:
    """How members are judged: ``"return"`` (mean return of ``episodes`` greedy episodes in ``env``) or
    ``"validation"`` (minus the imitation loss on ``batches`` batches of held-out data)."""

    kind: str
    env: str | None = None
    episodes: int = 10
    envs: int = 10
    batches: int = 10


class MemberWorker:
    """Holds one member's algorithm; trains, judges, mutates and hands over its state."""

    def __init__(
        self,
        *,
        algo_name: str,
        observation_space: gym.Space,
        action_space: gym.Space,
        dataset: Dataset,
        validation: Dataset | None,
        fitness: FitnessSpec,
        device: str = "cpu",
        threads: int | None = None,
    ) -> None:
        if threads is not None:
            torch.set_num_threads(max(1, threads))
        self.algo_name, self.observation_space, self.action_space = algo_name, observation_space, action_space
        self.dataset, self.validation, self.fitness_spec = dataset, validation, fitness
        self.device = torch.device(device)
        self.algo: Algorithm | None = None
        self._envs = None
        self._prepared: dict[tuple, Any] = {}

    def create(self, config: dict[str, Any], *, seed: int, total_updates: int) -> None:
        """A fresh member with ``config`` and initial weights drawn from ``seed``."""
        self.algo = make_algo(self.algo_name, self.observation_space, self.action_space, config=config, device=self.device, seed=seed)
        self.algo.total_updates = total_updates
        make_offline_sampler(self.algo, self.dataset, seed=seed)  # normalization statistics, dataset info

    def config(self) -> dict[str, Any]:
        return dataclasses.asdict(self.algo.config)

    def get_state(self) -> dict[str, Any]:
        return algo_state(self.algo)

    def set_state(self, state: dict[str, Any]) -> None:
        """Become the member ``state`` describes (a tournament winner's copy)."""
        self.algo = algo_from_state(self.algo_name, self.observation_space, self.action_space, state, device=self.device)

    def mutate(self, mutation: Mutation) -> dict[str, Any]:
        self.algo = apply_mutation(self.algo, mutation)
        return self.config()

    def sampler(self, seed: int):
        """A sampler over the shared data. Normalization was fitted when the member was created (and travels
        with its state): transition data is prepared once per worker and reused across generations."""
        algo = self.algo
        if algo.batch_kind != "transitions" or algo.frame_stacking()[0] > 1:
            return make_offline_sampler(algo, self.dataset, seed=seed, fit=False)[0]
        config = algo.config
        key = (getattr(config, "reward_normalization", None), getattr(config, "reward_scale", None), repr(algo.dataset_columns()))
        if key not in self._prepared:
            self._prepared = {key: prepare_training_data(algo, self.dataset, fit=False)[0]}
        return UniformSampler(self._prepared[key], config.batch_size, seed=seed)

    def train(self, steps: int, *, seed: int) -> dict[str, float]:
        """``steps`` gradient steps on the shared dataset; the mean of each training metric."""
        torch.manual_seed(seed)
        sampler = self.sampler(seed)
        metrics = MetricAccumulator()
        self.algo.train(True)
        for _ in range(steps):
            metrics.add(self.algo.update_offline(sampler.sample()))
        return metrics.means()

    def evaluate(self, *, seed: int, generation: int) -> float:
        """This member's fitness now (higher is better)."""
        spec = self.fitness_spec
        self.algo.train(False)
        try:
            if spec.kind == "return":
                if self._envs is None:
                    self._envs = make_vector_env(spec.env, max(1, min(spec.envs, spec.episodes)))
                result = evaluate(
                    self.algo.rollout_policy(self._envs.num_envs, deterministic=True), self._envs, env_id=spec.env,
                    episodes=spec.episodes, seed=eval_seed(seed, generation),
                )
                return float(result.mean_return)
            return -validation_loss(self.algo, self.validation, batches=spec.batches, seed=eval_seed(seed + 3, generation))
        finally:
            self.algo.train(True)

    def close(self) -> None:
        if self._envs is not None:
            self._envs.close()
            self._envs = None


def validation_loss(algo: Algorithm, validation: Dataset, *, batches: int, seed: int) -> float:
    """Mean imitation loss of ``algo`` on ``batches`` batches of held-out data drawn with ``seed``."""
    sampler = make_offline_sampler(algo, validation, seed=seed, fit=False)[0]
    with torch.no_grad():
        losses = [float(algo.loss(sampler.sample())[0]) for _ in range(batches)]
    return float(np.mean(losses))


def algo_state(algo: Algorithm) -> dict[str, Any]:
    """Config, weights, buffers, optimizer states and counters, as CPU tensors and plain data."""
    names = {id(p): n for n, p in algo.named_parameters()}
    optimizers = {}
    for key, optimizer in algo.optimizers.items():
        optimizers[key] = {
            names[id(p)]: {k: v.detach().cpu().clone() if torch.is_tensor(v) else v for k, v in optimizer.state[p].items()}
            for p in optimizer.param_groups[0]["params"]
            if p in optimizer.state
        }
    return {
        "config": dataclasses.asdict(algo.config),
        "model": {k: v.detach().cpu().clone() for k, v in algo.state_dict().items()},
        "optimizers": optimizers,
        "num_updates": algo.num_updates,
        "total_updates": algo.total_updates,
    }


def algo_from_state(
    algo_name: str, observation_space: gym.Space, action_space: gym.Space, state: dict[str, Any], *, device: torch.device | str
) -> Algorithm:
    """Rebuild a member from :meth:`MemberWorker.get_state`."""
    algo = make_algo(algo_name, observation_space, action_space, config=state["config"], device=device, seed=0)
    algo.load_state_dict(state["model"])
    params = dict(algo.named_parameters())
    for key, optimizer in algo.optimizers.items():
        for name, entries in state["optimizers"].get(key, {}).items():
            optimizer.state[params[name]] = {k: v.to(device).clone() if torch.is_tensor(v) else v for k, v in entries.items()}
    algo.num_updates, algo.total_updates = int(state["num_updates"]), int(state["total_updates"])
    return algo
