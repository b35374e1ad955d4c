"""Where the members live: in this process (``LocalBackend``) or as Ray actors (``RayBackend``).

Both hold one :class:`~offrl.hpo.worker.MemberWorker` per place in the
population and answer the same calls. In an online or hybrid search the local
backend's workers share one replay buffer; each Ray actor keeps a replica that
is sent every member's transitions. The local backend trains members whose
configurations agree up to their learning rates as one batched model (every
weight with a leading member axis, one vmapped update for all, each member
stepping with its own learning rates: ``offrl.train.seed_group.StackedModel``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from offrl.data.replay import ReplayBuffer
from offrl.errors import OffrlError
from offrl.hpo.mutation import Mutation
from offrl.hpo.space import learning_rate_fields
from offrl.hpo.worker import MemberWorker, Transitions
from offrl.train.run import MetricAccumulator
from offrl.train.seed_group import StackedModel, blocker


class LocalBackend:
    """Members in this process; ``batched`` trains matching members together."""

    name = "local"

    def __init__(self, size: int, worker_options: dict[str, Any], *, batched: bool = True) -> None:
        interaction = worker_options.get("interaction")
        if interaction is not None:  # one buffer every member adds to and samples from
            worker_options = {
                **worker_options,
                "buffer": ReplayBuffer(
                    worker_options["observation_space"], worker_options["action_space"], interaction.buffer_size,
                    device=worker_options.get("device", "cpu"),
                ),
            }
        self.num_envs = interaction.num_envs if interaction is not None else 0
        self.workers = [MemberWorker(**worker_options) for _ in range(size)]
        self.batched = batched
        self.last_cohorts: list[list[int]] = []  # which places trained together in the last generation

    def create(self, slot: int, config: dict[str, Any], *, seed: int, total_updates: int) -> None:
        self.workers[slot].create(config, seed=seed, total_updates=total_updates)

    def train(self, steps: int, seeds: list[int]) -> list[dict[str, float]]:
        results: list[dict[str, float]] = [{} for _ in self.workers]
        self.last_cohorts = cohorts(self.workers) if self.batched else [[i] for i in range(len(self.workers))]
        for cohort in self.last_cohorts:
            if len(cohort) == 1:
                results[cohort[0]] = self.workers[cohort[0]].train(steps, seed=seeds[cohort[0]])
                continue
            torch.manual_seed(seeds[cohort[0]])
            members = [self.workers[i] for i in cohort]
            samplers = [w.sampler(seeds[i]) for w, i in zip(members, cohort)]
            for worker in members:
                worker.algo.train(True)
            model = StackedModel([w.algo for w in members])
            accumulators = [MetricAccumulator() for _ in cohort]
            for _ in range(steps):
                batches = [s.sample() for s in samplers]
                with members[0].mixed_precision():
                    outputs = model.update(members[0].update_method, batches)
                for accumulator, output in zip(accumulators, outputs):
                    accumulator.add(output)
            for index, accumulator in zip(cohort, accumulators):
                results[index] = accumulator.means()
        return results

    def evaluate(self, *, seed: int, generation: int) -> list[float]:
        return [w.evaluate(seed=seed, generation=generation) for w in self.workers]

    def collect(self, transitions: int, seeds: list[int], reset_seeds: list[int] | None, *, explore: bool = True) -> list[tuple[Transitions, list[float]]]:
        return [
            w.collect(transitions, seed=seed, env_offset=slot * self.num_envs, reset_seed=None if reset_seeds is None else reset_seeds[slot], explore=explore)
            for slot, (w, seed) in enumerate(zip(self.workers, seeds))
        ]

    def add(self, batches: list[Transitions]) -> None:
        self.workers[0].add_transitions(batches)  # the buffer all of them share

    def set_interacting(self, interacting: bool) -> None:
        for worker in self.workers:
            worker.set_interacting(interacting)

    def buffer_state(self) -> dict[str, torch.Tensor]:
        return self.workers[0].buffer_state()

    def load_buffer(self, state: dict[str, torch.Tensor]) -> None:
        self.workers[0].load_buffer(state)

    def reproduce(self, parents: list[int]) -> None:
        states = {p: self.workers[p].get_state() for p in set(parents)}
        for slot, parent in enumerate(parents):
            if parent != slot:
                self.workers[slot].set_state(states[parent])

    def mutate(self, mutations: dict[int, Mutation]) -> dict[int, dict[str, Any]]:
        return {slot: self.workers[slot].mutate(mutation) for slot, mutation in mutations.items()}

    def state(self, slot: int) -> dict[str, Any]:
        return self.workers[slot].get_state()

    def set_state(self, slot: int, state: dict[str, Any]) -> None:
        self.workers[slot].set_state(state)

    def close(self) -> None:
        for worker in self.workers:
            worker.close()


def cohorts(workers: list[MemberWorker]) -> list[list[int]]:
    """Places whose members can share one batched update: the same configuration up to learning rates,
    the same update count, and an algorithm a stacked update can run (``seed_group.blocker``)."""
    groups: dict[Any, list[int]] = {}
    for index, worker in enumerate(workers):
        algo = worker.algo
        if blocker(algo) is not None:
            groups[("alone", index)] = [index]
            continue
        config = dataclasses.asdict(algo.config)
        for field in learning_rate_fields(type(algo.config)):
            config.pop(field)
        groups.setdefault((repr(sorted(config.items())), algo.num_updates, algo.total_updates), []).append(index)
    return list(groups.values())


class RayBackend:
    """Each member a Ray actor; the dataset is put in Ray's object store once and shared by every actor."""

    name = "ray"

    def __init__(
        self, size: int, worker_options: dict[str, Any], *, address: str | None = None, cpus_per_member: float | None = None
    ) -> None:
        try:
            import ray
        except ImportError:
            raise OffrlError("the Ray backend needs Ray: pip install 'offrl[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        available = ray.cluster_resources().get("CPU", 1.0)
        cpus = cpus_per_member if cpus_per_member is not None else min(1.0, available / size)
        options = dict(worker_options)
        if options.get("dataset") is not None:
            options["dataset"] = ray.put(options["dataset"])  # once: actors map it from the object store
        if options.get("validation") is not None:
            options["validation"] = ray.put(options["validation"])
        options["threads"] = max(1, int(cpus))
        self.num_envs = options["interaction"].num_envs if options.get("interaction") is not None else 0
        actor = ray.remote(MemberWorker).options(num_cpus=cpus)
        self.actors = [actor.remote(**options) for _ in range(size)]

    def _all(self, refs: list[Any]) -> list[Any]:
        return self.ray.get(refs)

    def create(self, slot: int, config: dict[str, Any], *, seed: int, total_updates: int) -> None:
        self._all([self.actors[slot].create.remote(config, seed=seed, total_updates=total_updates)])

    def train(self, steps: int, seeds: list[int]) -> list[dict[str, float]]:
        return self._all([a.train.remote(steps, seed=s) for a, s in zip(self.actors, seeds)])

    def evaluate(self, *, seed: int, generation: int) -> list[float]:
        return self._all([a.evaluate.remote(seed=seed, generation=generation) for a in self.actors])

    def collect(self, transitions: int, seeds: list[int], reset_seeds: list[int] | None, *, explore: bool = True) -> list[tuple[Transitions, list[float]]]:
        return self._all([
            a.collect.remote(transitions, seed=seed, env_offset=slot * self.num_envs, reset_seed=None if reset_seeds is None else reset_seeds[slot], explore=explore)
            for slot, (a, seed) in enumerate(zip(self.actors, seeds))
        ])

    def add(self, batches: list[Transitions]) -> None:
        shared = self.ray.put(batches)  # once; every replica adds the same rows in the same order
        self._all([a.add_transitions.remote(shared) for a in self.actors])

    def set_interacting(self, interacting: bool) -> None:
        self._all([a.set_interacting.remote(interacting) for a in self.actors])

    def buffer_state(self) -> dict[str, torch.Tensor]:
        return self._all([self.actors[0].buffer_state.remote()])[0]

    def load_buffer(self, state: dict[str, torch.Tensor]) -> None:
        shared = self.ray.put(state)
        self._all([a.load_buffer.remote(shared) for a in self.actors])

    def reproduce(self, parents: list[int]) -> None:
        # Every parent's state is asked for before any place is overwritten: an actor runs its calls in order.
        states = {p: self.actors[p].get_state.remote() for p in set(parents)}
        self._all([
            self.actors[slot].set_state.remote(states[parent])
            for slot, parent in enumerate(parents)
            if parent != slot
        ])

    def mutate(self, mutations: dict[int, Mutation]) -> dict[int, dict[str, Any]]:
        configs = self._all([self.actors[slot].mutate.remote(mutation) for slot, mutation in mutations.items()])
        return dict(zip(mutations, configs))

    def state(self, slot: int) -> dict[str, Any]:
        return self._all([self.actors[slot].get_state.remote()])[0]

    def set_state(self, slot: int, state: dict[str, Any]) -> None:
        self._all([self.actors[slot].set_state.remote(state)])

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
