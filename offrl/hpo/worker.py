"""One population member where it lives: its algorithm, trained on the shared data and judged by the fitness.

The in-process backend holds these objects itself; the Ray backend runs each as
a Ray actor. Everything crossing between them and the search is plain data:
configs as dicts, states as tensors, :class:`~offrl.hpo.mutation.Mutation` plans,
transitions as arrays.

In an online or hybrid search every member also steps an environment of its
own with its exploration policy; the transitions of all members go into one
replay buffer that every member samples from. In process that is one buffer
object; each Ray actor holds a replica that receives every member's
transitions in the same order, so the replicas stay identical.
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
from offrl.data.replay import ReplayBuffer
from offrl.data.sampler import MixedSampler, UniformSampler
from offrl.data.tree import tree_items, tree_map
from offrl.hpo.mutation import Mutation, apply_mutation
from offrl.nn.precision import update_context
from offrl.ope import algo_policy, fitted_q_evaluation
from offrl.train.collector import Collector
from offrl.train.evaluate import evaluate, evaluation_slots, make_vector_env
from offrl.train.memory import keep_freed_memory
from offrl.train.run import MetricAccumulator, eval_seed, make_offline_sampler, prepare_training_data


@dataclasses.dataclass
class FitnessSpec:
    """How members are judged: ``"return"`` (mean return of ``episodes`` greedy episodes in ``env``),
    ``"validation"`` (minus the imitation loss on ``batches`` batches of held-out data) or ``"fqe"``
    (the greedy policy's discounted return on the dataset, estimated by fitted Q evaluation in
    ``fqe_steps`` steps)."""

    kind: str
    env: str | None = None
    episodes: int = 10
    envs: int = 10
    batches: int = 10
    fqe_steps: int = 5_000


@dataclasses.dataclass
class InteractionSpec:
    """Online and hybrid searches: how members step ``env`` into the shared replay buffer."""

    env: str
    num_envs: int = 1  # environments each member steps together
    utd_ratio: float = 1.0  # gradient steps per environment transition
    offline_ratio: float | None = 0.5  # hybrid: the dataset's share of each batch (RLPD); None: the union uniformly
    buffer_size: int = 1_000_000
    warmup_steps: int = 5_000  # random-action transitions (all members together) before the first update
    collect_every: int = 250  # gradient steps between collections
    online_after: int = 0  # offline-to-online: gradient steps on the dataset alone before the members interact


Transitions = dict[str, Any]  # the keyword arguments of ReplayBuffer.add, as arrays


class MemberWorker:
    """Holds one member's algorithm; trains, judges, mutates and hands over its state."""

    def __init__(
        self,
        *,
        algo_name: str,
        observation_space: gym.Space,
        action_space: gym.Space,
        dataset: Dataset | None,
        validation: Dataset | None,
        fitness: FitnessSpec,
        interaction: InteractionSpec | None = None,
        buffer: ReplayBuffer | None = None,
        device: str = "cpu",
        precision: str = "fp32",
        threads: int | None = None,
    ) -> None:
        if threads is not None:
            torch.set_num_threads(max(1, threads))
        self.algo_name, self.observation_space, self.action_space = algo_name, observation_space, action_space
        self.dataset, self.validation, self.fitness_spec = dataset, validation, fitness
        self.interaction = interaction
        self.device = torch.device(device)
        self.mixed_precision = update_context(precision, self.device)  # entered around each gradient step
        if interaction is not None and buffer is None:
            buffer = ReplayBuffer(observation_space, action_space, interaction.buffer_size, device=self.device)
        self.buffer = buffer  # shared by the members of this process; a replica in a Ray actor
        self.interacting = False  # in a generation that collects (the RL update on mixed batches)
        self.algo: Algorithm | None = None
        self._envs = None
        self._collector: Collector | None = None
        self._prepared: dict[tuple, Any] = {}

    @property
    def update_method(self) -> str:
        """The algorithm's step: ``update_offline`` on the dataset alone, ``update`` (the RL step) with interaction."""
        return "update" if self.interacting else "update_offline"

    def set_interacting(self, interacting: bool) -> None:
        self.interacting = interacting

    def create(self, config: dict[str, Any], *, seed: int, total_updates: int) -> None:
        """A fresh member with ``config`` and initial weights drawn from ``seed``."""
        self.algo = make_algo(self.algo_name, self.observation_space, self.action_space, config=config, device=self.device, seed=seed)
        self.algo.total_updates = total_updates
        if self.dataset is not None:
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
        """A sampler over the shared data: the dataset, and with interaction the shared replay buffer.
        Normalization was fitted when the member was created (and travels with its state): transition
        data is prepared once per worker and reused across generations."""
        offline, scale = self._dataset_sampler(seed)
        if not self.interacting:
            return offline
        return MixedSampler(
            offline, self.buffer.view(seed + 1), self.algo.config.batch_size,
            offline_ratio=self.interaction.offline_ratio, online_reward_scale=scale,
        )

    def _dataset_sampler(self, seed: int) -> tuple[Any, float]:
        algo = self.algo
        if self.dataset is None:
            return None, 1.0
        if algo.batch_kind != "transitions" or algo.frame_stacking()[0] > 1:
            sampler, info = make_offline_sampler(algo, self.dataset, seed=seed, fit=False)
            return sampler, info["reward_scale"]
        config = algo.config
        key = (getattr(config, "reward_normalization", None), getattr(config, "reward_scale", None), repr(algo.dataset_columns()))
        if key not in self._prepared:
            self._prepared = {key: prepare_training_data(algo, self.dataset, fit=False)}
        data, info = self._prepared[key]
        return UniformSampler(data, config.batch_size, seed=seed), info["reward_scale"]

    def train(self, steps: int, *, seed: int) -> dict[str, float]:
        """``steps`` gradient steps on the shared data; the mean of each training metric."""
        keep_freed_memory()  # as the trainer does (offrl.train.memory)
        torch.manual_seed(seed)
        sampler = self.sampler(seed)
        update = getattr(self.algo, self.update_method)
        metrics = MetricAccumulator()
        self.algo.train(True)
        for _ in range(steps):
            batch = sampler.sample()
            with self.mixed_precision():
                metrics.add(update(batch))
        return metrics.means()

    def diverged(self) -> bool:
        """Whether a weight or statistic of the member is NaN or infinite."""
        return any(t.is_floating_point() and not bool(torch.isfinite(t).all()) for t in self.algo.state_dict().values())

    def collect(
        self, transitions: int, *, seed: int, env_offset: int, reset_seed: int | None = None, explore: bool = True
    ) -> tuple[Transitions | None, list[float]]:
        """At least ``transitions`` environment transitions with the exploration policy (uniformly random
        actions with ``explore=False``), environments reset first with ``reset_seed`` when given; returns
        them (environment slots numbered from ``env_offset``) and the returns of the episodes that ended.

        A member that has diverged adds nothing: a step with a NaN or infinite action, observation or
        reward ends its collection there, unstored, so one member's divergence never reaches the buffer
        the others learn from (its fitness is NaN: it loses every tournament)."""
        spec = self.interaction
        log = TransitionLog(env_offset)
        if self._collector is None:
            self._collector = Collector(spec.env, spec.num_envs, log, seed=reset_seed if reset_seed is not None else seed)
        else:
            self._collector.buffer = log
            if reset_seed is not None:
                self._collector.reset(reset_seed)
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        if explore and self.diverged():
            return None, []
        policy = self.algo.rollout_policy(spec.num_envs, deterministic=False) if explore else None
        self.algo.train(False)
        try:
            with torch.no_grad():
                while log.size < transitions:
                    self._collector.step(policy)
                    if not log.last_is_finite():
                        log.drop_last()
                        break
        finally:
            self.algo.train(True)
        return log.transitions(), self._collector.pop_returns()

    def add_transitions(self, batches: list[Transitions]) -> None:
        """Add every member's transitions, in member order, to this worker's replica of the shared buffer."""
        for batch in batches:
            if batch is not None:
                self.buffer.add(**batch)

    def buffer_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.buffer.state_dict().items()}

    def load_buffer(self, state: dict[str, torch.Tensor]) -> None:
        self.buffer.load_state_dict(state)

    def evaluate(self, *, seed: int, generation: int) -> float:
        """This member's fitness now (higher is better)."""
        spec = self.fitness_spec
        if self.diverged():
            return float("nan")
        self.algo.train(False)
        try:
            if spec.kind == "return":
                if self._envs is None:
                    self._envs = make_vector_env(spec.env, evaluation_slots(spec.envs, spec.episodes))
                result = evaluate(
                    self.algo.rollout_policy(self._envs.num_envs, deterministic=True), self._envs, env_id=spec.env,
                    episodes=spec.episodes, seed=eval_seed(seed, generation),
                )
                return float(result.mean_return)
            if spec.kind == "fqe":
                policy = algo_policy(self.algo)
                return fitted_q_evaluation(policy, self.dataset, steps=spec.fqe_steps, seed=eval_seed(seed + 5, generation), device=self.device).value
            return -validation_loss(self.algo, self.validation, batches=spec.batches, seed=eval_seed(seed + 3, generation))
        finally:
            self.algo.train(True)

    def close(self) -> None:
        if self._envs is not None:
            self._envs.close()
            self._envs = None
        if self._collector is not None:
            self._collector.close()
            self._collector = None


class TransitionLog:
    """Where a member's collector writes: transitions kept in order, handed on as one batch per member."""

    def __init__(self, env_offset: int) -> None:
        self.env_offset = env_offset
        self.parts: list[Transitions] = []
        self.size = 0

    def add(self, *, env_ids: np.ndarray, **columns: Any) -> None:
        copies = {key: tree_map(np.array, value) for key, value in columns.items()}  # the envs may reuse their arrays
        self.parts.append({**copies, "env_ids": np.asarray(env_ids) + self.env_offset})
        self.size += len(env_ids)

    def last_is_finite(self) -> bool:
        last = self.parts[-1]
        return all(
            np.isfinite(value).all()
            for key in ("observations", "actions", "rewards", "next_observations")
            for _, value in tree_items(last[key], key)
            if np.issubdtype(value.dtype, np.floating)
        )

    def drop_last(self) -> None:
        self.size -= len(self.parts.pop()["env_ids"])

    def transitions(self) -> Transitions | None:
        if not self.parts:
            return None
        return {key: _concatenate([part[key] for part in self.parts]) for key in self.parts[0]}


def _concatenate(values: list[Any]) -> Any:
    if isinstance(values[0], dict):
        return {key: _concatenate([v[key] for v in values]) for key in values[0]}
    return np.concatenate([np.asarray(v) for v in values])


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
