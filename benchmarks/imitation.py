"""Imitation algorithms side by side on offrl's scripted-demonstration tasks: rollout success rate by number of demos.

    python benchmarks/imitation.py                       # about 15 minutes on 2 CPU cores
    python benchmarks/imitation.py --demos 20,100 --seeds 3 --steps 3000 --episodes 50
    python benchmarks/imitation.py --algos iris --tasks offrl/ObstacleReach-v0,offrl/CueMemory-v0

Tasks (``offrl.zoo.tasks``): ``offrl/ObstacleReach-v0`` (demonstrations pass an obstacle on the left or the right
at random: bimodal), ``offrl/CueMemory-v0`` (the goal is cued on the first step only: the policy needs memory) and
``offrl/ObstacleReach-Image-v0`` (the first task from a rendered 32x32 camera image plus the position, robomimic's
spatial-softmax encoder; fewer algorithms, it is slower: about 9 minutes per run on 2 CPU cores). Demonstrations: the scripted demonstrator with Gaussian
action noise 0.1, recorded and read back through robomimic's HDF5 layout. Every algorithm trains ``--steps``
gradient steps with the small-network settings of tests/algos/test_imitation.py (the same for every demo count),
then ``--episodes`` rollouts score its success rate. Mean over seeds [min, max]. The table is appended to
benchmarks/results/imitation.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import RESULTS_DIR, markdown_table, record  # noqa: E402

RESULTS = RESULTS_DIR / "imitation.md"
TITLE = "Imitation benchmark results\n\nRecorded by `python benchmarks/imitation.py`"
LOW_DIM = ["bc", "bc_gaussian", "bc_gmm", "bc_vae", "bc_rnn", "bc_rnn_gmm", "bc_transformer", "hbc", "iris"]
TASKS = {
    "offrl/ObstacleReach-v0": LOW_DIM,
    "offrl/CueMemory-v0": LOW_DIM,
    "offrl/ObstacleReach-Image-v0": ["bc", "bc_gmm"],
}
IMAGE = {"encoder": "spatial_softmax", "encoder_features": 64}


def settings(name: str) -> tuple[str, dict]:
    """Registered algorithm and overrides: the learning tests' small-network settings."""
    from tests.algos.test_imitation import SETTINGS

    if name == "bc":
        return "bc", {"hidden_dims": (64, 64)}
    if name == "bc_gaussian":
        return "bc", {"hidden_dims": (64, 64), "policy": "gaussian"}
    return name, dict(SETTINGS[name][2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demos", default="20,100", help="numbers of demonstrations, comma-separated")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--episodes", type=int, default=50, help="rollouts per trained policy")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--algos", default=None, help="only these algorithms, comma-separated (default: each task's list)")
    args = parser.parse_args()

    import torch

    import offrl
    from offrl.data.collect import collect
    from offrl.data.formats import load_dataset, save_dataset
    from offrl.zoo.tasks import demonstrator

    torch.set_num_threads(2)
    work = Path(tempfile.mkdtemp(prefix="offrl-imitation-"))
    demo_counts = [int(n) for n in args.demos.split(",")]
    rows, started = [], time.time()
    for task in args.tasks.split(","):
        for demos in demo_counts if "Image" not in task else demo_counts[-1:]:
            path = work / f"{task.replace('/', '_')}-{demos}.hdf5"
            data = collect(task, demonstrator(task, 10, seed=demos), episodes=demos, num_envs=10, seed=demos, noise=0.1)
            save_dataset(data, path, format="robomimic")
            dataset = load_dataset(path)
            cells = []
            for name in [a for a in TASKS[task] if args.algos is None or a in args.algos.split(",")]:
                registered, overrides = settings(name)
                if "Image" in task:
                    overrides = {**overrides, **IMAGE}
                rates = []
                for seed in range(args.seeds):
                    algo = offrl.make_algo(registered, dataset.observation_space, dataset.action_space, seed=seed, **overrides)
                    result = offrl.train_offline(
                        algo, dataset, env=task, steps=args.steps, eval_every=0, eval_episodes=args.episodes, seed=seed,
                        run_dir=work / f"{path.stem}-{name}-{seed}", progress=False, tensorboard=False,
                    )
                    if result.final_eval is None:  # interrupted (Ctrl-C, a time limit): the table would be incomplete
                        raise SystemExit(f"stopped during {task} {name} seed {seed}: no table recorded; the lines above are the runs that finished")
                    rates.append(100 * result.final_eval.success_rate)
                    print(f"{task} {demos} demos {name} seed {seed}: {rates[-1]:.0f}%", flush=True)
                cells.append(f"{statistics.mean(rates):.0f} [{min(rates):.0f}, {max(rates):.0f}]")
            rows.append([task, str(demos), f"{len(dataset):,}", *cells])
    algos = [a for a in LOW_DIM if args.algos is None or a in args.algos.split(",")]
    table_rows = []
    for row in rows:  # the image task has fewer columns
        ran = [a for a in TASKS[row[0]] if a in algos]
        table_rows.append(row[:3] + [row[3 + ran.index(a)] if a in ran else "—" for a in algos])
    body = (
        f"Success rate (%) over {args.episodes} rollouts, mean over {args.seeds} seeds [min, max]; {args.steps:,} gradient "
        f"steps each (`--algos {args.algos or 'all'} --tasks {args.tasks}`); demonstrations with action noise 0.1 through robomimic's HDF5 layout; small-network settings of "
        f"tests/algos/test_imitation.py (bc_gaussian: `bc` with `policy=gaussian`; image task: `encoder=spatial_softmax`, "
        f"64 features). Total time {(time.time() - started) / 60:.0f} min.\n\n"
        + markdown_table(["task", "demos", "transitions", *algos], table_rows)
    )
    record(RESULTS, TITLE, "success rate by number of demonstrations (`python benchmarks/imitation.py`)", body)


if __name__ == "__main__":
    main()
