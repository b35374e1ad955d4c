"""Evolutionary search (``offrl search``): what it finds at an equal budget, and what batching members saves.

    python benchmarks/search.py --quick                       # a few minutes: both parts, small budget
    python benchmarks/search.py throughput --population 8 --steps 300 --reps 3
    python benchmarks/search.py quality --dataset hopper-medium --population 8 --evo-steps 1000 --generations 6
    python benchmarks/search.py online --online-env InvertedDoublePendulum-v5 --population 4 --evo-steps 2000 --generations 5

throughput: gradient steps per second of a population of N members of one configuration whose learning
rates differ (as after learning-rate mutations), trained in process as one batched model (every weight
with a leading member axis, each member stepping with its own learning rates) against the same members
trained one after another; repetitions alternate which goes first. Members are counted: N members of S
steps each are N x S steps.

quality (--fqe: members judged without a simulator, by fitted Q evaluation on the dataset): at an equal budget of gradient steps (population x generations x evo_steps), with the paper's
settings (benchmarks/quality.py): the evolved population's elite; random search over the same space
(N configurations drawn from it, each trained generations x evo_steps steps, the best by the same
fitness kept); and one run of the default configuration trained for the whole budget (and, for
reference, for one lineage's steps). Each final policy
is then evaluated on fresh episodes (other seeds than the search judged on).

online: an online search (members stepping their own environments into one shared replay buffer) against
one online run of the default configuration with the same budget of gradient steps and environment
transitions (population x generations x evo_steps of each, after the same warmup), and one run of a
single lineage's steps; final policies evaluated on fresh episodes.

Results are appended to benchmarks/results/search.md.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS_DIR, markdown_table, record  # noqa: E402

RESULTS = RESULTS_DIR / "search.md"
TITLE = "Evolutionary search benchmark results\n\nRecorded by `python benchmarks/search.py`"
FRESH_SEED = 777_000  # final evaluations: episodes the search never judged on


def load(name: str):
    import offrl

    return offrl.load_dataset(name)


def settings(algo: str, dataset: str, size: int) -> dict:
    from quality import settings_for

    return settings_for(algo, dataset, size)


def throughput(args: argparse.Namespace) -> str:
    import torch

    from offrl.hpo.backends import LocalBackend
    from offrl.hpo.worker import FitnessSpec

    dataset = load(args.dataset)
    rows = []
    for algo, hidden in [(a, h) for a in args.algos.split(",") for h in args.hidden.split(";")]:
        base = settings(algo, args.dataset, len(dataset))
        if hidden != "paper":
            base["hidden_dims"] = tuple(int(w) for w in hidden.split(","))
        lr_fields = [k for k in base if k == "lr" or k.endswith("_lr")]
        rng = random.Random(0)
        configs = [dict(base)] + [{**base, **{k: base[k] * rng.choice([0.8, 1.2, 1.44]) for k in lr_fields}} for _ in range(args.population - 1)]
        options = {
            "algo_name": algo, "observation_space": dataset.observation_space, "action_space": dataset.action_space,
            "dataset": dataset, "validation": None, "fitness": FitnessSpec("return", env="unused"), "device": args.device,
        }
        rates: dict[str, list[float]] = {"batched": [], "sequential": []}
        for rep in range(args.reps):
            order = ["batched", "sequential"] if rep % 2 == 0 else ["sequential", "batched"]
            for mode in order:
                runner = LocalBackend(args.population, options, batched=mode == "batched")
                for slot, config in enumerate(configs):
                    runner.create(slot, config, seed=slot, total_updates=10**6)
                runner.train(max(10, args.steps // 10), list(range(args.population)))  # warm-up
                if mode == "batched":
                    assert len(runner.last_cohorts) == 1, runner.last_cohorts
                started = time.perf_counter()
                runner.train(args.steps, list(range(args.population)))
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                rates[mode].append(args.population * args.steps / (time.perf_counter() - started))
                print(f"{algo} {hidden} {mode}: {rates[mode][-1]:.0f} member steps/s", flush=True)
        batched, sequential = statistics.median(rates["batched"]), statistics.median(rates["sequential"])
        rows.append([
            algo, "x".join(str(w) for w in base["hidden_dims"]), base["batch_size"], args.population, _summary(rates["batched"]), _summary(rates["sequential"]), f"{batched / sequential:.2f}x",
        ])
    table = markdown_table(["algorithm", "hidden", "batch", "members", "batched (member steps/s)", "one after another", "speed-up"], rows)
    command = f"python benchmarks/search.py throughput --dataset {args.dataset} --algos {args.algos} --population {args.population} " \
              f"--steps {args.steps} --reps {args.reps} --hidden '{args.hidden}'"
    return (f"Command: `{command}`. Median [min, max] over {args.reps} repetitions of {args.steps} steps per member, "
            f"the paper's settings, on {args.dataset} ({len(dataset):,} transitions).\n\n{table}")


def quality(args: argparse.Namespace) -> str:
    from offrl.hpo import Population
    from offrl.hpo.worker import MemberWorker
    from offrl.zoo.datasets import parse_name

    dataset = load(args.dataset)
    env = parse_name(args.dataset).env_id if parse_name(args.dataset) else args.env
    base = settings(args.algo, args.dataset, len(dataset))
    population = Population(args.algo, dataset, size=args.population, env=None if args.fqe else env, config=base,
                            eval_episodes=args.eval_episodes, eval_envs=args.eval_episodes, fqe_steps=args.fqe_steps, seed=args.seed)
    lineage_steps = args.evo_steps * args.generations
    budget = lineage_steps * args.population
    fresh_return = fresh_judge(population, env, args.final_episodes)

    results = []
    with tempfile.TemporaryDirectory() as work:
        search, elite, elapsed = run_search(population, args, Path(work))
        results.append(["evolution (elite)", search.best_fitness, fresh_return(elite), elapsed, _config_text(population, search.elite.config)])

        started = time.perf_counter()
        rng = random.Random(args.seed + 1)
        judge = {**population.worker_options()}
        best = None
        for index in range(args.population):
            config = population.space.sample(population.base_config, rng)
            worker = MemberWorker(**judge)
            worker.create(dataclasses_asdict(config), seed=1000 + index, total_updates=lineage_steps)
            worker.train(lineage_steps, seed=1000 + index)
            score = worker.evaluate(seed=args.seed, generation=args.generations - 1)
            worker.close()
            print(f"random search {index}: fitness {score:.1f} ({_config_text(population, dataclasses_asdict(config))})", flush=True)
            if best is None or score > best[0]:
                best = (score, worker.algo, dataclasses_asdict(config))
        elapsed = time.perf_counter() - started
        results.append(["random search (best of N)", best[0], fresh_return(best[1]), elapsed, _config_text(population, best[2])])

        for label, steps in ((f"default, one run of the whole budget ({budget:,} steps)", budget),
                             (f"default, one run of one lineage's steps ({lineage_steps:,})", lineage_steps)):
            started = time.perf_counter()
            worker = MemberWorker(**judge)
            worker.create(dataclasses_asdict(population.base_config), seed=2000, total_updates=steps)
            worker.train(steps, seed=2000)
            score = worker.evaluate(seed=args.seed, generation=args.generations - 1)
            worker.close()
            elapsed = time.perf_counter() - started
            print(f"{label}: fitness {score:.1f}", flush=True)
            results.append([label, score, fresh_return(worker.algo), elapsed, _config_text(population, dataclasses_asdict(population.base_config))])

    rows = [[name, f"{judged:.1f}", f"{final:.1f}", f"{seconds / 60:.1f}", config] for name, judged, final, seconds, config in results]
    table = markdown_table(["method", "fitness (search's episodes)", f"return, {args.final_episodes} fresh episodes", "minutes", "hyperparameters"], rows)
    command = (f"python benchmarks/search.py quality --dataset {args.dataset} --algo {args.algo} --population {args.population} "
               f"--evo-steps {args.evo_steps} --generations {args.generations} --eval-episodes {args.eval_episodes} "
               f"--final-episodes {args.final_episodes} --seed {args.seed}" + (f" --fqe --fqe-steps {args.fqe_steps}" if args.fqe else ""))
    fitness = (f"fitted Q evaluation of the greedy policy on the dataset ({args.fqe_steps:,} steps; no simulator)" if args.fqe
               else f"mean return of {args.eval_episodes} episodes")
    return (f"Command: `{command}`. Budget: {budget:,} gradient steps per method ({args.population} members x "
            f"{args.generations} generations x {args.evo_steps} steps; random search: {args.population} configurations x "
            f"{lineage_steps:,} steps; default: one run of {budget:,} steps, and one of {lineage_steps:,} for reference). {args.algo} with the paper's settings on "
            f"{args.dataset} ({len(dataset):,} transitions); fitness (selection and judging): {fitness}; the search "
            f"space is offrl's default for {args.algo} ({', '.join(h.to_text() for h in population.space)}).\n\n{table}")


def run_search(population, args: argparse.Namespace, work: Path):
    """The search of ``args``' budget: its result, its elite's algorithm and the seconds it took."""
    from offrl.hpo import train_population
    from offrl.train import checkpoint as ckpt

    started = time.perf_counter()
    search = train_population(population, evo_steps=args.evo_steps, max_steps=args.evo_steps * args.generations,
                              run_dir=work / "search", progress=True)
    elapsed = time.perf_counter() - started
    return search, ckpt.load_algo(search.elite_dir, device=args.device), elapsed


def fresh_judge(population, env: str, episodes: int):
    """A function: a policy's mean return on ``episodes`` episodes the search never judged on."""
    from offrl.hpo.worker import FitnessSpec, MemberWorker

    options = {**population.worker_options(), "interaction": None, "fitness": FitnessSpec("return", env=env, episodes=episodes, envs=episodes)}

    def fresh_return(algo) -> float:
        worker = MemberWorker(**options)
        worker.algo = algo
        try:
            return worker.evaluate(seed=FRESH_SEED, generation=0)
        finally:
            worker.close()

    return fresh_return


def online(args: argparse.Namespace) -> str:
    import offrl
    from offrl.hpo import Population

    env, algo_name = args.online_env, args.online_algo
    population = Population(algo_name, None, size=args.population, env=env, online=True, warmup_steps=args.warmup_steps,
                            eval_episodes=args.eval_episodes, eval_envs=args.eval_episodes, seed=args.seed, device=args.device)
    lineage_steps = args.evo_steps * args.generations
    budget = lineage_steps * args.population
    fresh_return = fresh_judge(population, env, args.final_episodes)
    results = []
    with tempfile.TemporaryDirectory() as work:
        search, elite, elapsed = run_search(population, args, Path(work))
        env_steps = args.warmup_steps + sum(m.env_steps for m in search.members)
        results.append(["evolution (elite)", search.best_fitness, fresh_return(elite), env_steps, elapsed, _config_text(population, search.elite.config)])
        for label, steps in ((f"default, one run of the whole budget ({budget:,} steps)", budget),
                             (f"default, one run of one lineage's steps ({lineage_steps:,})", lineage_steps)):
            algo = offrl.make_algo(algo_name, population.observation_space, population.action_space, seed=2000, device=args.device)
            started = time.perf_counter()
            result = offrl.train_online(
                algo, env, steps=steps, warmup_steps=args.warmup_steps, eval_every=0, eval_episodes=args.eval_episodes,
                eval_envs=args.eval_episodes, seed=2000, run_dir=Path(work) / f"single-{steps}", progress=False, tensorboard=False,
            )
            elapsed = time.perf_counter() - started
            print(f"{label}: return {result.final_eval.mean_return:.1f}", flush=True)
            results.append([label, result.final_eval.mean_return, fresh_return(algo), result.env_steps, elapsed,
                            _config_text(population, dataclasses_asdict(population.base_config))])
    rows = [[name, f"{judged:.1f}", f"{final:.1f}", f"{steps:,}", f"{seconds / 60:.1f}", config] for name, judged, final, steps, seconds, config in results]
    table = markdown_table(["method", f"return, last judgement ({args.eval_episodes} episodes)", f"return, {args.final_episodes} fresh episodes",
                            "environment steps", "minutes", "hyperparameters"], rows)
    command = (f"python benchmarks/search.py online --online-env {env} --online-algo {algo_name} --population {args.population} "
               f"--evo-steps {args.evo_steps} --generations {args.generations} --warmup-steps {args.warmup_steps} "
               f"--eval-episodes {args.eval_episodes} --final-episodes {args.final_episodes} --seed {args.seed}")
    return (f"Command: `{command}`. {algo_name} with offrl's defaults on {env}; budget: {budget:,} gradient steps and as many "
            f"environment transitions after {args.warmup_steps:,} random ones ({args.population} members x {args.generations} "
            f"generations x {args.evo_steps} steps, one shared replay buffer), against one online run of the default configuration "
            f"of the same budget and one of a lineage's steps; search space: offrl's default for {algo_name} "
            f"({', '.join(h.to_text() for h in population.space)}).\n\n{table}")


def dataclasses_asdict(config) -> dict:
    import dataclasses

    return dataclasses.asdict(config)


def _config_text(population, config: dict) -> str:
    from offrl.config import make_config

    values = population.space.values(make_config(type(population.base_config), config))
    parts = [f"{name}={value:.3g}" if isinstance(value, float) else f"{name}={value}" for name, value in values.items()]
    if config.get("hidden_dims") is not None:
        parts.append("hidden=" + "x".join(str(h) for h in config["hidden_dims"]))
    return ", ".join(parts)


def _summary(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} [{min(values):.0f}, {max(values):.0f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", nargs="?", choices=["throughput", "quality", "online", "all"], default="all")
    parser.add_argument("--quick", action="store_true", help="small budgets: a few minutes")
    parser.add_argument("--dataset", default="hopper-medium")
    parser.add_argument("--env", default=None, help="evaluation environment when the dataset is not a zoo name")
    parser.add_argument("--algo", default="td3_bc")
    parser.add_argument("--algos", default="td3_bc,iql", help="throughput: algorithms")
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--steps", type=int, default=300, help="throughput: timed steps per member")
    parser.add_argument("--hidden", default="paper;64,64", help="throughput: network widths to time, ';'-separated (paper: the paper's)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--evo-steps", type=int, default=1000)
    parser.add_argument("--generations", type=int, default=6)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--final-episodes", type=int, default=10)
    parser.add_argument("--fqe", action="store_true", help="quality: judge without a simulator, by fitted Q evaluation")
    parser.add_argument("--fqe-steps", type=int, default=5000)
    parser.add_argument("--online-env", default="InvertedDoublePendulum-v5", help="online: the environment")
    parser.add_argument("--online-algo", default="sac", help="online: the algorithm")
    parser.add_argument("--warmup-steps", type=int, default=5000, help="online: random-action transitions first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    if args.quick:
        args.steps, args.reps, args.evo_steps, args.generations, args.algos = 100, 1, 200, 3, "td3_bc"
        args.warmup_steps, args.online_env = 500, "Pendulum-v1"
    import torch

    torch.set_num_threads(args.threads)
    if args.part in ("throughput", "all"):
        record(RESULTS, TITLE, "a population in one batched model against its members one after another", throughput(args))
    if args.part in ("quality", "all"):
        record(RESULTS, TITLE, "evolution against random search and the default at an equal budget", quality(args))
    if args.part in ("online", "all"):
        record(RESULTS, TITLE, "an online search against single online runs at an equal budget", online(args))


if __name__ == "__main__":
    main()
