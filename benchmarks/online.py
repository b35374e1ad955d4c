"""Online, hybrid and offline-to-online learning curves.

    python benchmarks/online.py pendulum            # SAC online on Pendulum-v1
    python benchmarks/online.py hopper              # SAC online on Hopper-v5 (300k steps)
    python benchmarks/online.py hopper --from-run /path/to/sac/run   # report an existing SAC run instead
    python benchmarks/online.py hybrid              # SAC, offline ratio 0.5 on hopper-medium-replay vs online only
    python benchmarks/online.py o2o                 # IQL on hopper-medium offline, then online

Each part trains with offrl's trainer, prints a table of evaluation returns,
draws the curves to benchmarks/results/online_<part>.png and appends the
table, with machine, versions and date, to benchmarks/results/online.md.
``--steps``, ``--seeds`` and ``--eval-every`` override a part's defaults.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import offrl
from offrl.train.logging import EVAL_CSV, read_csv
from offrl.train.trainer import train

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS_DIR, markdown_table, record  # noqa: E402

RESULTS = RESULTS_DIR / "online.md"
# hybrid arms share one SAC: LayerNorm critics, the ingredient RLPD found necessary with offline data
HYBRID_SAC = {"critic_layer_norm": True}

PARTS = {
    # part: (env, dataset, steps, online_steps, eval_every, seeds)
    "pendulum": ("Pendulum-v1", None, 10_000, 0, 1_000, 3),
    "hopper": ("Hopper-v5", None, 300_000, 0, 5_000, 1),
    "hybrid": ("Hopper-v5", "hopper-medium-replay", 100_000, 0, 5_000, 1),
    "o2o": ("Hopper-v5", "hopper-medium", 100_000, 100_000, 10_000, 1),
}


def arms(part: str) -> list[tuple[str, str, dict]]:
    """(label, algorithm, train() options) of each curve in a part."""
    if part == "hybrid":
        return [
            ("online only", "sac", {"use_dataset": False}),
            ("offline ratio 0.5", "sac", {"offline_ratio": 0.5, "utd_ratio": 1.0}),
        ]
    if part == "o2o":
        return [("IQL offline then online", "iql", {})]
    return [("SAC", "sac", {})]


def run_arm(part: str, label: str, algo_name: str, options: dict, args, seed: int, work: Path) -> tuple[list[dict], float]:
    env_id, dataset_name, steps, online_steps, eval_every, _ = PARTS[part]
    options = dict(options)
    dataset = offrl.load_dataset(dataset_name) if dataset_name and options.pop("use_dataset", True) else None
    spaces = (dataset.observation_space, dataset.action_space) if dataset is not None else env_spaces(env_id)
    algo = offrl.make_algo(algo_name, *spaces, seed=seed, **(HYBRID_SAC if part == "hybrid" else {}))
    run_dir = work / part / f"{label.replace(' ', '_')}_seed{seed}"
    start = time.perf_counter()
    train(
        algo,
        dataset,
        env=env_id,
        steps=args.steps or steps,
        online_steps=(args.online_steps or online_steps) if online_steps else 0,
        eval_every=args.eval_every or eval_every,
        eval_episodes=10,
        seed=seed,
        run_dir=run_dir,
        keep_checkpoints=1,
        progress=False,
        tensorboard=False,
        **options,
    )
    return read_csv(run_dir / EVAL_CSV), time.perf_counter() - start


def env_spaces(env_id: str):
    import gymnasium as gym

    env = gym.make(env_id)
    return env.observation_space, env.action_space


def x_axis(part: str) -> str:
    # hybrid arms are compared at equal environment steps; the others by gradient steps
    return "env_steps" if part in ("hybrid", "hopper", "pendulum") else "step"


def summarize(part: str, curves: dict[str, list[list[dict]]]) -> str:
    key = x_axis(part)
    xs = sorted({int(float(r[key])) for runs in curves.values() for run in runs for r in run})
    header = [key.replace("_", " ")] + list(curves)
    rows = []
    for x in xs:
        row = [f"{x:,}"]
        for runs in curves.values():
            values = [float(r["mean_return"]) for run in runs for r in run if int(float(r[key])) == x]
            normalized = [float(r["normalized_score"]) for run in runs for r in run if int(float(r[key])) == x and r.get("normalized_score")]
            cell = f"{np.mean(values):.1f} ± {np.std(values):.1f}" if values else "-"
            if normalized:
                cell += f" ({np.mean(normalized):.1f})"
            row.append(cell)
        rows.append(row)
    return markdown_table(header, rows)


def plot(part: str, curves: dict[str, list[list[dict]]], title: str, offline_steps: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = x_axis(part)
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, runs in curves.items():
        xs = sorted({int(float(r[key])) for run in runs for r in run})
        means = [np.mean([float(r["mean_return"]) for run in runs for r in run if int(float(r[key])) == x]) for x in xs]
        ax.plot(xs, means, marker="o", markersize=3, label=f"{label} ({len(runs)} seed{'s' if len(runs) > 1 else ''})")
    if part == "o2o":
        ax.axvline(offline_steps, color="gray", linestyle="--", label="online phase starts")
    ax.set_xlabel(key.replace("_", " "))
    ax.set_ylabel("mean evaluation return (10 episodes)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    path = RESULTS_DIR / f"online_{part}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=sorted(PARTS))
    parser.add_argument("--steps", type=int, default=None, help="gradient steps per phase (default: the part's)")
    parser.add_argument("--online-steps", type=int, default=None, help="o2o: online gradient steps (default: the part's)")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--eval-every", type=int, default=None)
    parser.add_argument("--from-run", type=Path, default=None, help="report this finished run's evaluations (one SAC curve)")
    parser.add_argument("--work", type=Path, default=Path("benchmark-runs"), help="where the runs are written")
    args = parser.parse_args()

    env_id, dataset_name, steps, online_steps, _, seeds = PARTS[args.part]
    seeds = args.seeds or seeds
    curves: dict[str, list[list[dict]]] = {}
    seconds: dict[str, list[float]] = {}
    if args.from_run:
        curves["SAC"] = [read_csv(args.from_run / EVAL_CSV)]
        seconds["SAC"] = []
    else:
        for label, algo_name, options in arms(args.part):
            for seed in range(seeds):
                evals, took = run_arm(args.part, label, algo_name, options, args, seed, args.work)
                curves.setdefault(label, []).append(evals)
                seconds.setdefault(label, []).append(took)
    steps = args.steps or steps
    setting = f"{env_id}" + (f", dataset {dataset_name}" if dataset_name else "") + f", {steps:,} gradient steps"
    if online_steps:
        setting += f" offline then {args.online_steps or online_steps:,} online"
    title = f"{args.part}: {setting}"
    png = plot(args.part, curves, title, steps)
    timing = ", ".join(f"{label}: {np.mean(t):.0f} s per seed" for label, t in seconds.items() if t)
    source = f"from the finished run {args.from_run}" if args.from_run else f"wall clock: {timing}"
    body = (
        f"{title}; {seeds if not args.from_run else 1} seed(s); mean ± std evaluation return over seeds "
        f"(D4RL-normalized score in parentheses); {source}. Plot: `{png.relative_to(RESULTS_DIR.parent)}`.\n\n"
        + summarize(args.part, curves)
    )
    record(RESULTS, "Online, hybrid and offline-to-online benchmarks", args.part, body)


if __name__ == "__main__":
    main()
