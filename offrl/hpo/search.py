"""The evolutionary search: train every member ``evo_steps``, judge, select, mutate, repeat.

Each generation:

1. every member takes ``evo_steps`` gradient steps on the shared dataset
   (members that match up to learning rates as one batched model, in process);
   in an online or hybrid search (``online=True``) the steps come in pieces of
   ``collect_every``: before each piece every member steps its own
   environments with its exploration policy (``1 / utd_ratio`` transitions
   per gradient step, environments reset at the start of each generation, as
   AgileRL does) and all the transitions go into one shared replay buffer that
   every member samples from (with the dataset, ``offline_ratio`` of each
   batch from the dataset);
2. each is judged: the mean return of greedy episodes in ``env`` (the same
   episode seeds for all), or, with no simulator, minus its imitation loss on
   held-out episodes; its fitness is the mean of its lineage's last
   ``eval_loop`` judgements;
3. the lineage table, its plot and the elite's run directory are written;
4. the search stops once every lineage has ``max_steps`` gradient steps or the
   best fitness reaches ``target``; otherwise tournament selection picks the
   parents, every member but the elite is mutated, and the new generation is
   checkpointed (``RUN_DIR/generations/gen_N``), ready to train.

``resume=True`` continues from the newest complete generation checkpoint: a
search stopped during generation N trains generation N again, with the same
seeds, mutations and episodes as if it had not stopped.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch

import offrl
from offrl.algos.registry import get_algo_class
from offrl.config import config_to_dict, make_config
from offrl.data.dataset import Dataset
from offrl.errors import CheckpointError, ConfigError, OffrlError
from offrl.hpo.backends import LocalBackend, RayBackend
from offrl.hpo.mutation import Mutations
from offrl.hpo.records import ELITE_DIR, LINEAGE, PLOT, plot_search, read_lineage, save_elite, write_lineage
from offrl.hpo.selection import TournamentSelection
from offrl.hpo.space import HyperparameterSpace, default_space
from offrl.hpo.worker import FitnessSpec, InteractionSpec, algo_from_state, algo_state
from offrl.io import atomic_path, write_json
from offrl.nn.precision import check_precision
from offrl.ope import check_fqe_observations
from offrl.spaces import as_float32
from offrl.train import checkpoint as ckpt
from offrl.train.run import read_record

SEARCH_FILE = "search.json"
GENERATIONS = "generations"
STATE_FILE = "state.json"
BUFFER_FILE = "replay_buffer.safetensors"
DEFAULT_WARMUP_STEPS = 5_000


@dataclasses.dataclass
class Member:
    """One place of the population in one generation."""

    id: int
    parent: int | None
    mutation: str  # "initial", "elite", "none", or "<kind>: <detail>"
    config: dict[str, Any]
    fitness: list[float]  # the lineage's judgements, oldest first (inherited from the parent)
    steps: int  # gradient steps of the lineage
    env_steps: int = 0  # environment transitions the lineage collected (online and hybrid searches)

    def selection_fitness(self, eval_loop: int) -> float:
        return float(np.mean(self.fitness[-eval_loop:])) if self.fitness else float("-inf")


class Population:
    """N members of one algorithm on one dataset and/or environment, and how they are judged.

    Args:
        algo: registered algorithm name.
        dataset: the shared training data (every member samples from the same arrays); None for an
            online search.
        size: number of members.
        env: Gymnasium id: fitness is the mean return of ``eval_episodes`` greedy episodes. Without it,
            an imitation algorithm's fitness is minus its imitation loss on held-out episodes
            (``validation``, else a ``validation_fraction`` of the dataset's episodes held out from
            training); any other algorithm's is the value fitted Q evaluation estimates for its greedy
            policy on the dataset (``fqe_steps`` regression steps; ``offrl.ope``).
        online: members also step ``env`` (``num_envs`` each) into one shared replay buffer of
            ``buffer_size`` transitions and train with the algorithm's RL update: an online search
            without a dataset, a hybrid one with it (``offline_ratio`` of each batch from the dataset,
            None: the union uniformly; default 0.5, RLPD, or None after offline pre-training). ``utd_ratio`` gradient steps per transition, after
            ``warmup_steps`` random-action transitions (default 5,000, or 0 after offline
            pre-training); collection every ``collect_every`` gradient steps. With ``online_after``,
            offline-to-online: generations that start before a lineage has ``online_after`` gradient
            steps train on the dataset alone, the later ones interact.
        config: the base hyperparameters (a Config instance or a dict of overrides of the defaults).
        space: what ``rl_hp`` mutations (and ``initial="sample"``) move; default ``default_space``.
        initial: ``"default"``: every member starts with ``config`` (different initial weights), as
            AgileRL; ``"sample"``: member 0 with ``config``, the others drawn from ``space``.
    """

    def __init__(
        self,
        algo: str,
        dataset: Dataset | None,
        *,
        size: int = 8,
        env: str | None = None,
        online: bool = False,
        offline_ratio: float | None | str = "default",
        utd_ratio: float = 1.0,
        warmup_steps: int | None = None,
        num_envs: int = 1,
        buffer_size: int = 1_000_000,
        collect_every: int = 250,
        online_after: int = 0,
        config: Any = None,
        space: HyperparameterSpace | None = None,
        validation: Dataset | None = None,
        validation_fraction: float = 0.1,
        initial: str = "default",
        eval_episodes: int = 10,
        eval_envs: int = 10,
        validation_batches: int = 10,
        fqe_steps: int = 5_000,
        seed: int = 0,
        device: str = "cpu",
        precision: str = "fp32",
    ) -> None:
        if size < 2:
            raise ConfigError(f"a population needs at least 2 members, not {size}")
        if initial not in ("default", "sample"):
            raise ConfigError(f"initial must be 'default' or 'sample', not {initial!r}")
        cls = get_algo_class(algo)
        if cls.batch_kind == "sequences":
            raise ConfigError(f"{algo} trains on episode windows: the search trains transition-based algorithms")
        self.algo, self.size, self.env, self.initial, self.seed, self.device = algo, size, env, initial, seed, device
        check_precision(precision, device)
        self.precision = precision
        self.base_config = config if isinstance(config, cls.Config) else make_config(cls.Config, config or {}, source=f"{algo} config")
        self.space = space if space is not None else default_space(algo, self.base_config)
        self.space.check(cls.Config, algo)
        self.interaction = None
        if online:
            self.interaction = _interaction(
                algo, self.base_config, env, dataset, offline_ratio=offline_ratio, utd_ratio=utd_ratio, warmup_steps=warmup_steps,
                num_envs=num_envs, buffer_size=buffer_size, collect_every=collect_every, online_after=online_after,
            )
        elif online_after:
            raise ConfigError("online_after starts interaction after offline pre-training: it needs online=True (--online)")
        elif dataset is None:
            raise ConfigError("a search without a dataset learns online: give online=True (--online) and an environment")
        if self.interaction is None:
            self.mode = "offline"
        elif dataset is None:
            self.mode = "online"
        else:
            self.mode = "offline-to-online" if online_after > 0 else "hybrid"
        if env is not None:
            self.fitness = FitnessSpec("return", env=env, episodes=eval_episodes, envs=eval_envs)
            self.dataset, self.validation = dataset, None
        elif not callable(getattr(cls, "loss", None)):  # no simulator, no imitation loss: off-policy evaluation
            if validation is not None:
                raise ConfigError(f"{algo} is judged by fitted Q evaluation on the training data: held-out demonstrations are for imitation algorithms")
            if fqe_steps < 1:
                raise ConfigError(f"fitted Q evaluation needs fqe_steps >= 1, not {fqe_steps}")
            self.fitness = FitnessSpec("fqe", fqe_steps=fqe_steps)
            self.dataset, self.validation = dataset, None
            check_fqe_observations(dataset.observation_space, f"{dataset.source} (no --env: {algo} members are judged by fitted Q evaluation)")
        else:
            self.fitness = FitnessSpec("validation", batches=validation_batches)
            if validation is None:
                if not 0.0 < validation_fraction < 1.0:
                    raise ConfigError(f"validation_fraction (--validation-fraction) must be in (0, 1), not {validation_fraction}")
                try:
                    train_part, validation = dataset.split(1.0 - validation_fraction, seed=seed)
                except ValueError as error:
                    raise OffrlError(f"{dataset.source}: cannot hold out validation episodes: {error}") from None
                dataset = train_part
            self.dataset, self.validation = dataset, validation
        if dataset is not None:
            self.source, self.fingerprint = dataset.source, dataset.fingerprint()
            self.observation_space, self.action_space = dataset.observation_space, dataset.action_space
            if env is not None:  # before any training: members are judged (and, online, collect) in it
                from offrl.train.evaluate import check_env_compatible, make_env

                probe = make_env(env)
                try:
                    check_env_compatible(probe, self.observation_space, self.action_space, env, f"the dataset {dataset.source}")
                finally:
                    probe.close()
        else:
            from offrl.train.evaluate import make_env

            probe = make_env(env)
            self.source, self.fingerprint = None, None
            self.observation_space, self.action_space = as_float32(probe.observation_space), probe.action_space
            probe.close()
        if getattr(self.base_config, "hidden_dims", ()) is None:
            # the discrete algorithms' default widths follow the observations (two 256-wide layers after vectors,
            # none after a CNN): written out, so architecture mutations have widths to change
            from offrl.algos.dqn import head_widths
            from offrl.nn.encoders import make_encoder

            widths = head_widths(self.base_config, make_encoder(self.observation_space, self.base_config))
            self.base_config = dataclasses.replace(self.base_config, hidden_dims=widths)

    def initial_configs(self, rng: random.Random) -> list[dict[str, Any]]:
        configs = [config_to_dict(self.base_config)]
        for _ in range(1, self.size):
            config = self.space.sample(self.base_config, rng) if self.initial == "sample" else self.base_config
            configs.append(config_to_dict(config))
        return configs

    def worker_options(self) -> dict[str, Any]:
        return {
            "algo_name": self.algo,
            "observation_space": self.observation_space,
            "action_space": self.action_space,
            "dataset": self.dataset,
            "validation": self.validation,
            "fitness": self.fitness,
            "interaction": self.interaction,
            "device": str(self.device),
            "precision": self.precision,
        }

    def dataset_record(self) -> dict[str, Any] | None:
        if self.dataset is None:
            return None
        return {"source": self.source, "fingerprint": self.fingerprint, "transitions": len(self.dataset)}

    def description(self) -> dict[str, Any]:
        return {
            "algo": self.algo,
            "size": self.size,
            "mode": self.mode,
            "env": self.env,
            "initial": self.initial,
            "seed": self.seed,
            "base_config": config_to_dict(self.base_config),
            "space": self.space.to_json(),
            "fitness": dataclasses.asdict(self.fitness),
            "interaction": None if self.interaction is None else dataclasses.asdict(self.interaction),
            "dataset": self.dataset_record(),
        }


def _interaction(
    algo: str, config: Any, env: str | None, dataset: Dataset | None, *, offline_ratio: float | None | str, utd_ratio: float,
    warmup_steps: int | None, num_envs: int, buffer_size: int, collect_every: int, online_after: int,
) -> InteractionSpec:
    if env is None:
        raise ConfigError("an online or hybrid search steps an environment: give env (--env)")
    if getattr(config, "frame_stack", 1) > 1:
        raise ConfigError(f"{algo} stacks frames: an online search shares one replay buffer, which stacks one collector's frames only")
    if offline_ratio == "default":
        offline_ratio = None if online_after > 0 else 0.5
    if offline_ratio is not None and not 0.0 <= offline_ratio <= 1.0:
        raise ConfigError(f"offline_ratio must be in [0, 1] (or None), not {offline_ratio}")
    if dataset is not None and offline_ratio == 1.0:
        raise ConfigError("offline_ratio 1 would never sample what the members collect: use an offline search (no --online)")
    if utd_ratio <= 0 or num_envs < 1 or buffer_size < 1 or collect_every < 1:
        raise ConfigError(
            f"need utd_ratio > 0, num_envs >= 1, buffer_size >= 1 and collect_every >= 1 (got {utd_ratio}, {num_envs}, {buffer_size}, {collect_every})"
        )
    if online_after < 0 or (online_after > 0 and dataset is None):
        raise ConfigError(f"online_after is offline pre-training on a dataset: it needs a dataset and must be >= 0 (got {online_after})")
    warmup = (DEFAULT_WARMUP_STEPS if online_after == 0 else 0) if warmup_steps is None else warmup_steps
    if warmup < 0:
        raise ConfigError(f"warmup_steps must be >= 0, not {warmup}")
    return InteractionSpec(
        env=env, num_envs=num_envs, utd_ratio=float(utd_ratio), offline_ratio=None if dataset is None else offline_ratio,
        buffer_size=buffer_size, warmup_steps=warmup, collect_every=collect_every, online_after=online_after,
    )


@dataclasses.dataclass
class SearchResult:
    run_dir: Path
    generations: int  # generations trained and judged
    best_fitness: float
    elite: Member
    elite_dir: Path
    members: list[Member]
    lineage: Path
    plot: Path | None
    reached_target: bool
    train_seconds: float  # time spent in gradient steps (the rest: collecting, judging, selection, records)
    collect_seconds: float = 0.0  # time spent stepping environments into the shared buffer


def train_population(
    population: Population,
    *,
    evo_steps: int = 10_000,
    max_steps: int = 300_000,
    target: float | None = None,
    eval_loop: int = 1,
    tournament: TournamentSelection | None = None,
    mutations: Mutations | None = None,
    run_dir: str | Path = "runs/search",
    resume: bool = False,
    backend: str = "local",
    address: str | None = None,
    cpus_per_member: float | None = None,
    batched: bool = True,
    progress: bool = True,
    run_info: dict[str, Any] | None = None,
) -> SearchResult:
    """Evolve ``population`` (see the module docstring); ``max_steps`` counts each lineage's gradient steps."""
    if evo_steps < 1 or max_steps < evo_steps:
        raise ConfigError(f"need 1 <= evo_steps <= max_steps (got evo_steps={evo_steps}, max_steps={max_steps})")
    if eval_loop < 1:
        raise ConfigError(f"eval_loop must be >= 1, not {eval_loop}")
    tournament = tournament or TournamentSelection()
    mutations = mutations or Mutations()
    tournament.select([0.0] * population.size, random.Random(0))  # a tournament larger than the population fails now
    run_dir = Path(run_dir)
    if population.interaction is not None:
        population.interaction = dataclasses.replace(population.interaction, buffer_size=_buffer_capacity(population, max_steps, run_dir, resume))
    settings = {
        "offrl_version": offrl.__version__,
        "population": population.description(),
        "evo_steps": evo_steps,
        "max_steps": max_steps,
        "target": target,
        "eval_loop": eval_loop,
        "tournament": dataclasses.asdict(tournament),
        "mutations": dataclasses.asdict(mutations),
        "backend": backend,
        **(run_info or {}),
    }
    if resume:
        generation, members, rng, next_id = _read_generation(run_dir, population)
        rows = [r for r in read_lineage(run_dir / LINEAGE) if int(r["generation"]) < generation]
        write_json(run_dir / SEARCH_FILE, settings)  # a new max_steps, target or backend from now on
    else:
        if (run_dir / SEARCH_FILE).exists():
            raise CheckpointError(f"{run_dir} already holds a search: resume it (offrl search --resume {run_dir}) or choose another --run-dir")
        run_dir.mkdir(parents=True, exist_ok=True)
        rng = random.Random(population.seed)
        members = [
            Member(id=slot, parent=None, mutation="initial", config=config, fitness=[], steps=0)
            for slot, config in enumerate(population.initial_configs(rng))
        ]
        generation, next_id, rows = 0, population.size, []

    options = population.worker_options()
    if backend == "local":
        runner = LocalBackend(population.size, options, batched=batched)
    elif backend == "ray":
        runner = RayBackend(population.size, options, address=address, cpus_per_member=cpus_per_member)
    else:
        raise ConfigError(f"backend must be 'local' or 'ray', not {backend!r}")
    config_class = get_algo_class(population.algo).Config
    interaction = population.interaction
    seconds = {"train": 0.0, "collect": 0.0}
    try:
        if resume:
            directory = run_dir / GENERATIONS / _generation_name(generation)
            for slot in range(population.size):
                member = ckpt.load_algo(directory / f"member_{slot}", algo=population.algo, device=population.device)
                # resumed with a larger max_steps, learning-rate schedules stretch to it (as an extended offrl train run's)
                member.total_updates = max(member.total_updates, max_steps)
                runner.set_state(slot, algo_state(member))
            if interaction is not None:
                runner.load_buffer(_load_buffer(directory / BUFFER_FILE))
        else:
            for slot, member in enumerate(members):
                runner.create(slot, member.config, seed=_seed(population.seed, 0, slot, 0), total_updates=max_steps)
            _save_generation(run_dir, 0, members, rng, next_id, runner, population)
            # written once generation 0 is on disk: a search that failed before it can simply be started again
            write_json(run_dir / SEARCH_FILE, settings)
        while True:
            returns = _train_generation(runner, population, generation, evo_steps, members, seconds)
            scores = runner.evaluate(seed=population.seed, generation=generation)
            for member, score in zip(members, scores):
                member.fitness.append(float(score))
                member.steps += evo_steps
            selection = [m.selection_fitness(eval_loop) for m in members]
            best = max(range(population.size), key=lambda i: (_finite(selection[i]), -i))
            rows += [
                _lineage_row(generation, m, population.space, config_class, slot == best, eval_loop, returns[slot] if interaction else None)
                for slot, m in enumerate(members)
            ]
            write_lineage(run_dir / LINEAGE, rows)
            plot = plot_search(run_dir / PLOT, rows, population.space.names, title=f"{population.algo} search")
            elite_algo = algo_from_state(
                population.algo, options["observation_space"], options["action_space"], runner.state(best), device=population.device
            )
            elite_dir = save_elite(run_dir, elite_algo, steps=members[best].steps, run_info=_elite_info(population, members[best], generation, selection[best]))
            reached = target is not None and selection[best] >= target
            if progress:
                cohorts = getattr(runner, "last_cohorts", None)
                batching = f", {len(cohorts)} batched group(s)" if cohorts and len(cohorts) < population.size else ""
                finite = [s for s in selection if np.isfinite(s)]
                lost = f", {population.size - len(finite)} diverged (NaN)" if len(finite) < population.size else ""
                print(
                    f"generation {generation}: best {selection[best]:.4g} (member {members[best].id}), "
                    f"mean {np.mean(finite) if finite else float('nan'):.4g}{lost}, steps {members[best].steps}/{max_steps}{batching}",
                    flush=True,
                )
            if reached or members[best].steps >= max_steps:
                return SearchResult(
                    run_dir=run_dir, generations=generation + 1, best_fitness=selection[best], elite=members[best],
                    elite_dir=elite_dir, members=members, lineage=run_dir / LINEAGE, plot=plot, reached_target=reached,
                    train_seconds=seconds["train"], collect_seconds=seconds["collect"],
                )
            parents, elite = tournament.select(selection, rng)
            runner.reproduce(parents)
            children = []
            for slot, parent in enumerate(parents):
                source = members[parent]
                label = "elite" if elite is not None and slot == 0 else "none"
                children.append(Member(next_id, source.id, label, dict(source.config), list(source.fitness), source.steps, source.env_steps))
                next_id += 1
            plans = {}
            for slot, child in enumerate(children):
                if child.mutation == "elite":
                    continue
                config = make_config(config_class, child.config, source="member config")
                plan = mutations.draw(population.algo, config, population.space, rng)
                child.mutation = plan.kind + (f": {plan.detail}" if plan.detail else "")
                if plan.kind != "none":
                    plans[slot] = plan
            for slot, config in runner.mutate(plans).items():
                children[slot].config = config
            members = children
            generation += 1
            _save_generation(run_dir, generation, members, rng, next_id, runner, population)
    finally:
        runner.close()


def _train_generation(runner, population: Population, generation: int, evo_steps: int, members: list[Member], seconds: dict[str, float]) -> list[list[float]]:
    """Every member's ``evo_steps`` gradient steps; with interaction, in pieces of ``collect_every`` steps,
    each after the members have collected its transitions into the shared buffer. Returns the returns of
    the training episodes each member finished (online and hybrid searches)."""
    interaction, size, seed = population.interaction, population.size, population.seed
    online = interaction is not None and members[0].steps >= interaction.online_after
    returns: list[list[float]] = [[] for _ in range(size)]
    if interaction is None:
        pieces = [evo_steps]
    else:
        runner.set_interacting(online)
        pieces = _pieces(evo_steps, interaction.collect_every) if online else [evo_steps]
        first_online = online and members[0].steps - evo_steps < interaction.online_after  # every lineage has the same steps
        if first_online and interaction.warmup_steps > 0:  # random actions, shared by all
            started = time.perf_counter()
            share = -(-interaction.warmup_steps // size)
            seeds = [_seed(seed, generation, slot, 4) for slot in range(size)]
            runner.add([rows for rows, _ in runner.collect(share, seeds, seeds, explore=False)])
            seconds["collect"] += time.perf_counter() - started
    done, collected, reset = 0, 0, True
    for piece, steps in enumerate(pieces):
        if online:
            started = time.perf_counter()
            needed = int(np.ceil((done + steps) / interaction.utd_ratio)) - collected
            if needed > 0:  # (with a high utd_ratio a piece may need none)
                seeds = [_seed(seed, generation, slot, 2, piece) for slot in range(size)]
                resets = [_seed(seed, generation, slot, 3) for slot in range(size)] if reset else None
                reset = False
                results = runner.collect(needed, seeds, resets)
                runner.add([rows for rows, _ in results])
                counts = [0 if rows is None else len(rows["rewards"]) for rows, _ in results]  # 0: diverged
                for slot, (_, finished) in enumerate(results):
                    returns[slot] += finished
                    members[slot].env_steps += counts[slot]
                collected += max(counts)
            seconds["collect"] += time.perf_counter() - started
        started = time.perf_counter()
        runner.train(steps, [_seed(seed, generation, slot, 1, *([piece] if piece else [])) for slot in range(size)])
        seconds["train"] += time.perf_counter() - started
        done += steps
    return returns


def _pieces(total: int, size: int) -> list[int]:
    return [size] * (total // size) + ([total % size] if total % size else [])


def _buffer_capacity(population: Population, max_steps: int, run_dir: Path, resume: bool) -> int:
    """The shared buffer's rows: what the search can collect, at most ``buffer_size``; a resumed search keeps at
    least its own (and grows it when resumed with a larger ``max_steps``)."""
    saved = 0
    if resume:
        try:
            saved = int(read_search(run_dir)["population"]["interaction"]["buffer_size"])
        except (KeyError, TypeError):
            raise CheckpointError(f"{run_dir}: the search was not online or hybrid (no replay buffer to resume)") from None
    spec = population.interaction
    online_steps = max(0, max_steps - spec.online_after)
    per_member = int(np.ceil(online_steps / spec.utd_ratio)) + spec.num_envs * (online_steps // spec.collect_every + 1)
    warmup = spec.warmup_steps + population.size * (1 + spec.num_envs)  # each member's share rounded up
    return max(1, saved, min(spec.buffer_size, warmup + population.size * per_member))


def _finite(value: float) -> float:
    return value if np.isfinite(value) else -1e300


def _seed(seed: int, generation: int, slot: int, purpose: int, *more: int) -> int:
    return int(np.random.SeedSequence([seed, generation, slot, purpose, *more]).generate_state(1)[0] % (2**31 - 1))


def _lineage_row(
    generation: int, member: Member, space: HyperparameterSpace, config_class: type, elite: bool, eval_loop: int,
    train_returns: list[float] | None = None,
) -> dict[str, Any]:
    config = make_config(config_class, member.config, source="member config")
    row = {
        "generation": generation,
        "member": member.id,
        "parent": "" if member.parent is None else member.parent,
        "mutation": member.mutation,
        "fitness": member.fitness[-1],
        "selection_fitness": member.selection_fitness(eval_loop),
        "steps": member.steps,
        "elite": int(elite),
    }
    if train_returns is not None:  # online and hybrid searches
        row["env_steps"] = member.env_steps
        row["train_return"] = float(np.mean(train_returns)) if train_returns else ""
    row.update(space.values(config))
    hidden = member.config.get("hidden_dims")
    if hidden:
        row.update({"hidden_dims": " ".join(str(h) for h in hidden), "hidden_layers": len(hidden), "hidden_units": sum(hidden)})
    if "activation" in member.config:
        row["activation"] = member.config["activation"]
    return row


def _elite_info(population: Population, member: Member, generation: int, fitness: float) -> dict[str, Any]:
    return {
        "offrl_version": offrl.__version__,
        "env": population.env,
        "mode": population.mode,
        "dataset": population.dataset_record(),
        "train": {"steps": member.steps, "env_steps": member.env_steps, "seed": population.seed, "goal_keys": []},
        "search": {"generation": generation, "member": member.id, "fitness": fitness, "fitness_kind": population.fitness.kind},
    }


def _generation_name(generation: int) -> str:
    return f"gen_{generation:06d}"


def _save_generation(run_dir: Path, generation: int, members: list[Member], rng: random.Random, next_id: int, runner, population: Population) -> None:
    """Members (checkpoints) and search state of a generation ready to train, written to a temporary
    directory renamed into place: a generation directory is complete or absent. The two newest are kept."""
    root = run_dir / GENERATIONS
    final = root / _generation_name(generation)
    staging = root / (_generation_name(generation) + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    for slot in range(population.size):
        algo = algo_from_state(population.algo, population.observation_space, population.action_space, runner.state(slot), device="cpu")
        ckpt.save_checkpoint(staging / f"member_{slot}", algo, step=members[slot].steps)
    if population.interaction is not None:
        with atomic_path(staging / BUFFER_FILE) as tmp:
            safetensors.torch.save_file({k: v.contiguous() for k, v in runner.buffer_state().items()}, str(tmp))
    version, state, gauss = rng.getstate()
    write_json(
        staging / STATE_FILE,
        {
            "generation": generation,
            "next_id": next_id,
            "members": [dataclasses.asdict(m) for m in members],
            "rng": [version, list(state), gauss],
        },
    )
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    for old in sorted(p for p in root.glob("gen_*") if p.is_dir() and not p.name.endswith(".tmp"))[:-2]:
        shutil.rmtree(old, ignore_errors=True)


def _read_generation(run_dir: Path, population: Population) -> tuple[int, list[Member], random.Random, int]:
    root = run_dir / GENERATIONS
    complete = sorted(p for p in root.glob("gen_*") if p.is_dir() and not p.name.endswith(".tmp") and (p / STATE_FILE).is_file())
    if not complete:
        raise CheckpointError(f"{run_dir}: no generation checkpoint to resume from (expected {GENERATIONS}/gen_*/{STATE_FILE})")
    try:
        saved = json.loads((run_dir / SEARCH_FILE).read_text())
        state = json.loads((complete[-1] / STATE_FILE).read_text())
        members = [Member(**m) for m in state["members"]]
        version, values, gauss = state["rng"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{complete[-1]}: not a readable search checkpoint ({error})") from None
    if saved["population"]["algo"] != population.algo or len(members) != population.size:
        raise CheckpointError(
            f"{run_dir} holds a search of {len(members)} {saved['population']['algo']} members, not {population.size} {population.algo}"
        )
    if saved["population"].get("mode", "offline") != population.mode:
        raise CheckpointError(f"{run_dir} holds a search that trains {saved['population'].get('mode', 'offline')}, not {population.mode}")
    if (saved["population"]["dataset"] or {}).get("fingerprint") != population.fingerprint:
        raise CheckpointError(f"{run_dir}: the search was trained on other data than {population.source} (fingerprints differ)")
    rng = random.Random()
    rng.setstate((version, tuple(values), gauss))
    return int(state["generation"]), members, rng, int(state["next_id"])


def _load_buffer(path: Path) -> dict[str, Any]:
    try:
        return safetensors.torch.load_file(str(path))
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path}: cannot read the shared replay buffer ({error})") from None


def read_search(run_dir: str | Path) -> dict[str, Any]:
    return read_record(run_dir, SEARCH_FILE, kind="search")


__all__ = ["ELITE_DIR", "Member", "Population", "SearchResult", "read_search", "train_population"]
