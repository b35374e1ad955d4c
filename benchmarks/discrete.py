"""Discrete actions against d3rlpy, side by side: learning quality on CartPole and MinAtar, CNN speed on images.

    python benchmarks/discrete.py quality [--env CartPole-v1] [--seeds 3] [--steps 5000]
    python benchmarks/discrete.py quality --env MinAtar/Breakout-v1 --episodes 1000 --steps 20000 [--expert CHECKPOINT]
    python benchmarks/discrete.py speed [--reps 3]

quality: an offrl Double DQN expert is trained online on the environment (the evaluation with the
best return is kept; ``--expert`` takes a checkpoint of an earlier such run instead), then 100
(``--episodes``) episodes of it with epsilon-greedy noise (``--epsilon``) make the dataset, the zoo's recipe (expert +
noise). Discrete BC, BCQ, CQL (and CRR, which d3rlpy has only for continuous actions) train offline on
it in both libraries with the same settings, network, steps and seeds; each policy is evaluated with
offrl's evaluator on the same episodes. The table holds the behaviour return, the mean return per
algorithm and library, and the spread over seeds. On MinAtar both libraries use the MinAtar paper's
network (one 16-filter 3x3 convolution, 128 features: offrl's ``encoder=minatar``, d3rlpy's
``PixelEncoderFactory(filters=[[16, 3, 1]])``) on the 10x10 0/1 channels.

speed: gradient steps per second of every discrete algorithm both libraries have (BC, BCQ, CQL, DQN,
Double DQN) on vector observations (LunarLander's shapes: 8 floats, 4 actions) with each library's
default network (two 256-wide layers) and d3rlpy's default batch sizes and learning rates; and of
discrete CQL with the Nature-DQN CNN on 84x84 uint8 frames, 4 frames stacked at sampling time from
single stored frames (offrl's FrameStackSampler, d3rlpy's FrameStackTransitionPicker), batch 32.
Each library's own training loop in a fresh process, alternating which goes first.

Both record their tables in benchmarks/results/discrete.md with machine, versions and date.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS_DIR, ROOT, markdown_table, record, refuse_unknown, run_worker  # noqa: E402
from quality import export_npz  # noqa: E402

WORKER = Path(__file__).resolve().parent / "discrete_d3rlpy.py"
RESULTS = RESULTS_DIR / "discrete.md"
TITLE = "Discrete-action benchmark results\n\nRecorded by `python benchmarks/discrete.py`"

# Shared by both libraries (offrl's field names). CartPole learns in thousands of steps, not Atari's millions:
# learning rate 1e-3 and target copies every 100 updates instead of 6.25e-5 and 8,000.
Q_LEARNING = {"lr": 1e-3, "batch_size": 64, "hidden_dims": (64, 64), "target_update_interval": 100, "discount": 0.99,
              "normalize_observations": False}
QUALITY = {
    "discrete_bc": {"lr": 1e-3, "batch_size": 64, "hidden_dims": (64, 64), "logit_penalty": 0.5, "normalize_observations": False},
    "discrete_bcq": {**Q_LEARNING, "threshold": 0.3, "logit_penalty": 1e-2},
    "discrete_cql": {**Q_LEARNING, "cql_alpha": 1.0, "double_q": True, "quantiles": 0},
    "discrete_crr": {"actor_lr": 1e-3, "critic_lr": 1e-3, "batch_size": 64, "hidden_dims": (64, 64), "normalize_observations": False},
}
# MinAtar: the paper's network and DQN settings (Young & Tian 2019: batch 32, target copies every 1,000 updates),
# Adam at 2.5e-4 for its RMSProp; the offline algorithms keep their CartPole settings on this network.
MINATAR_NET = {"encoder": "minatar", "encoder_features": 128, "hidden_dims": ()}
MINATAR_Q = {**MINATAR_NET, "lr": 2.5e-4, "batch_size": 32, "target_update_interval": 1000, "discount": 0.99}
ENVS: dict[str, dict[str, Any]] = {
    "CartPole-v1": {
        "expert": {**Q_LEARNING, "target_update_interval": 200, "exploration_steps": 10_000},
        "expert_run": {"steps": 30_000, "warmup_steps": 1_000, "eval_every": 2_000, "eval_episodes": 10},
        "quality": QUALITY,
    },
    "MinAtar/Breakout-v1": {
        "expert": {**MINATAR_Q, "exploration_steps": 100_000, "exploration_final": 0.01},
        "expert_run": {"steps": 300_000, "warmup_steps": 5_000, "eval_every": 25_000, "eval_episodes": 20},
        "quality": {
            "discrete_bc": {**MINATAR_NET, "lr": 2.5e-4, "batch_size": 32, "logit_penalty": 0.5},
            "discrete_bcq": {**MINATAR_Q, "threshold": 0.3, "logit_penalty": 1e-2},
            "discrete_cql": {**MINATAR_Q, "cql_alpha": 1.0, "double_q": True, "quantiles": 0},
            "discrete_crr": {**MINATAR_NET, "actor_lr": 2.5e-4, "critic_lr": 2.5e-4, "batch_size": 32},
        },
    },
}
IN_D3RLPY = {"discrete_bc", "discrete_bcq", "discrete_cql", "dqn", "double_dqn"}
# Speed rows: (algorithm, data, steps per timed interval: 1-10 s on 2 cores, settings).
# d3rlpy's defaults (Dopamine's Atari DQN for the Q-learners), two 256-wide layers on vectors.
VECTOR_Q = {"lr": 6.25e-5, "batch_size": 32, "hidden_dims": (256, 256), "target_update_interval": 8000, "discount": 0.99,
            "normalize_observations": False}
SPEED: dict[str, tuple[str, str, int, dict[str, Any]]] = {
    "discrete_bc": ("discrete_bc", "vectors", 2000, {"lr": 1e-3, "batch_size": 100, "hidden_dims": (256, 256), "logit_penalty": 0.5,
                                                   "normalize_observations": False}),
    "discrete_bcq": ("discrete_bcq", "vectors", 2000, {**VECTOR_Q, "threshold": 0.3, "logit_penalty": 1e-2}),
    "discrete_cql": ("discrete_cql", "vectors", 2000, {**VECTOR_Q, "cql_alpha": 1.0, "double_q": True, "quantiles": 0}),
    "dqn": ("dqn", "vectors", 2000, VECTOR_Q),
    "double_dqn": ("double_dqn", "vectors", 2000, VECTOR_Q),
    "discrete_cql_images": ("discrete_cql", "images", 40, {
        "lr": 6.25e-5, "batch_size": 32, "encoder": "nature", "encoder_features": 512, "frame_stack": 4, "hidden_dims": (),
        "target_update_interval": 8000, "discount": 0.99, "cql_alpha": 1.0, "double_q": True, "quantiles": 0}),
}
DATA_TEXT = {"vectors": "8-dim vectors, MLP 256x256", "images": "84x84 frames x 4, Nature CNN"}


# ---------------------------------------------------------------- quality


def train_expert(env_id: str, work: Path, seed: int) -> Path:
    """Online Double DQN on ``env_id`` with the ENVS settings; the checkpoint of its best evaluation."""
    import offrl
    from offrl.spaces import as_float32
    from offrl.train.evaluate import make_env

    env = make_env(env_id)
    algo = offrl.make_algo("double_dqn", as_float32(env.observation_space), env.action_space, seed=seed, **ENVS[env_id]["expert"])
    run_dir = work / "expert"
    offrl.train_online(algo, env_id, **ENVS[env_id]["expert_run"], keep_checkpoints=100, run_dir=run_dir, progress=False,
                       tensorboard=False, seed=seed)
    return best_checkpoint(run_dir)


def best_checkpoint(run_dir: Path) -> Path:
    with open(run_dir / "evaluations.csv") as handle:
        best = max(csv.DictReader(handle), key=lambda row: float(row["mean_return"]))
    return run_dir / "checkpoints" / f"step_{int(best['step']):09d}.json"


def expert_return(checkpoint: Path) -> float:
    """The return its run's evaluation recorded for this checkpoint."""
    step = int(checkpoint.stem.split("_")[-1])
    with open(checkpoint.parent.parent / "evaluations.csv") as handle:
        return next(float(row["mean_return"]) for row in csv.DictReader(handle) if int(row["step"]) == step)


class ChannelsFirst:
    """d3rlpy's exported policy takes channels-first float images; the environment gives channels-last 0/1 bytes."""

    def __init__(self, module) -> None:
        self.module = module

    def __call__(self, observations):
        return self.module(observations.permute(0, 3, 1, 2).float())


def quality(args) -> None:
    import torch

    import offrl
    from offrl.data.collect import collect
    from offrl.rollout import StatelessRollout
    from offrl.train.checkpoint import load_algo
    from offrl.train.evaluate import evaluate, make_vector_env, torch_policy
    from offrl.train.run import eval_seed

    torch.set_num_threads(args.threads)
    env_id, settings = args.env, ENVS[args.env]["quality"]
    work = Path(tempfile.mkdtemp(prefix="offrl-discrete-"))
    checkpoint = Path(args.expert) if args.expert else train_expert(env_id, work, seed=0)
    expert, expert_score = load_algo(checkpoint), expert_return(checkpoint)
    dataset = collect(env_id, expert.rollout_policy(10, deterministic=True), episodes=args.episodes, num_envs=10, seed=1,
                      epsilon=args.epsilon)
    behaviour = float(dataset.episode_returns().mean())
    images = dataset.observations.ndim == 4  # MinAtar: [N, 10, 10, C] channels-last 0/1
    data = export_npz(dataset, work / "data.npz")
    print(f"expert {expert_score:.1f} ({checkpoint}); dataset {len(dataset)} transitions, behaviour {behaviour:.1f}")
    returns: dict[tuple[str, str], list[float]] = {}
    for name in args.algos:
        for seed in range(args.seeds):
            for library in ("offrl", "d3rlpy"):
                if library == "d3rlpy" and name not in IN_D3RLPY:
                    continue
                envs = make_vector_env(env_id, 10)
                if library == "offrl":
                    algo = offrl.make_algo(name, dataset.observation_space, dataset.action_space, seed=seed, **settings[name])
                    offrl.train_offline(algo, dataset, steps=args.steps, eval_every=0, seed=seed, run_dir=work / f"{name}-{seed}",
                                        progress=False, tensorboard=False)
                    algo.train(False)
                    policy = StatelessRollout(algo, deterministic=True)
                else:
                    job = {"mode": "quality", "algo": name, "settings": settings[name], "data": str(data), "steps": args.steps,
                           "seed": seed, "device": "cpu", "threads": args.threads, "policy": str(work / f"{name}-{seed}.pt"),
                           "layout": "channels_last" if images else None}
                    run_worker([args.d3rlpy_python, str(WORKER)], job, work, f"d3rlpy-{name}-{seed}")
                    module = torch.jit.load(job["policy"]).eval()
                    policy = torch_policy(ChannelsFirst(module) if images else module, torch.device("cpu"))
                result = evaluate(policy, envs, env_id=env_id, episodes=args.eval_episodes, seed=eval_seed(seed, args.steps))
                envs.close()
                returns.setdefault((name, library), []).append(result.mean_return)
                print(f"{name:14s} {library:7s} seed {seed}: {result.mean_return:.1f}", flush=True)
    rows = []
    for name in args.algos:
        cells = []
        for library in ("offrl", "d3rlpy"):
            values = returns.get((name, library))
            cells.append("—" if not values else f"{statistics.mean(values):.1f} [{min(values):.1f}, {max(values):.1f}]")
        rows.append([name, *cells])
    body = (
        f"{env_id}; data: {args.episodes} episodes of an offrl Double DQN expert (return {expert_score:.1f}, settings "
        f"`{json.dumps(ENVS[env_id]['expert'])}`, {ENVS[env_id]['expert_run']['steps']:,} online steps) with epsilon "
        f"{args.epsilon} ({len(dataset):,} transitions, behaviour return **{behaviour:.1f}**); {args.steps:,} gradient steps, "
        f"{args.seeds} seeds, {args.eval_episodes} evaluation episodes each; mean return over seeds [min, max]. "
        f"Settings: `{json.dumps({name: settings[name] for name in args.algos})}`. d3rlpy has no discrete CRR.\n\n"
        + markdown_table(["algorithm", "offrl", f"d3rlpy {args.d3rlpy_version}"], rows)
    )
    record(RESULTS, TITLE, f"offline quality on {env_id} (`python benchmarks/discrete.py quality --env {env_id}`)", body)


# ---------------------------------------------------------------- speed


def offrl_speed_worker(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    import offrl

    torch.set_num_threads(job["threads"])
    data = np.load(job["data"])
    dataset = offrl.Dataset(observations=data["observations"], actions=data["actions"], rewards=data["rewards"],
                            next_observations=data["next_observations"], terminals=data["terminals"], timeouts=data["timeouts"])
    algo = offrl.make_algo(job["algo"], dataset.observation_space, dataset.action_space, seed=job["seed"], **job["settings"])
    with tempfile.TemporaryDirectory() as work:
        offrl.train_offline(algo, dataset, steps=job["steps"], eval_every=0, log_every=job["interval"], run_dir=work,
                            checkpoint_every=job["steps"], progress=False, tensorboard=False, precision=job.get("precision", "fp32"))
        with open(Path(work) / "metrics.csv") as handle:
            rates = [float(row["steps_per_sec"]) for row in csv.DictReader(handle)]
    return {"steps_per_sec": rates[1:], "version": offrl.__version__}


def synthetic_data(path: Path, kind: str, size: int) -> Path:
    """Synthetic data with 4 actions and episodes of 500 steps: ``images`` are Atari-shaped (single 84x84
    uint8 frames), ``vectors`` LunarLander-shaped (8 floats)."""
    rng = np.random.default_rng(0)
    if kind == "images":
        observations = rng.integers(0, 256, size=(size + 1, 84, 84), dtype=np.uint8)
    else:
        observations = rng.normal(size=(size + 1, 8)).astype(np.float32)
    timeouts = (np.arange(size) % 500) == 499
    np.savez(path, observations=observations[:-1], next_observations=observations[1:], actions=rng.integers(0, 4, size),
             rewards=rng.normal(size=size).astype(np.float32), terminals=np.zeros(size, bool), timeouts=timeouts)
    return path


def speed(args) -> None:
    work = Path(tempfile.mkdtemp(prefix="offrl-discrete-speed-"))
    refuse_unknown(args.algos, SPEED, "no speed settings for")
    kinds = {SPEED[row][1] for row in args.algos}
    data = {kind: synthetic_data(work / f"{kind}.npz", kind, args.size) for kind in kinds}
    intervals = args.intervals
    steps_per_interval = {row: args.interval or SPEED[row][2] for row in args.algos}
    rates = {row: {"offrl": [], "d3rlpy": []} for row in args.algos}
    for rep in range(args.reps):
        order = ("offrl", "d3rlpy") if rep % 2 == 0 else ("d3rlpy", "offrl")
        for row in args.algos:
            algo, kind, _, settings = SPEED[row]
            interval = steps_per_interval[row]
            for library in order:
                job = {"mode": "speed", "algo": algo, "settings": settings, "data": str(data[kind]), "seed": rep,
                       "device": "cpu", "threads": args.threads, "interval": interval, "steps": interval * (intervals + 1),
                       "precision": args.precision}
                command = [args.d3rlpy_python, str(WORKER)] if library == "d3rlpy" else [sys.executable, __file__, "--worker"]
                result = run_worker(command, job, work, f"{library}-{row}-{rep}")
                rates[row][library].append(statistics.median(result["steps_per_sec"]))
            print(f"rep {rep} {row:20s} offrl {rates[row]['offrl'][-1]:7.1f}  d3rlpy {rates[row]['d3rlpy'][-1]:7.1f} steps/s  "
                  f"x{rates[row]['offrl'][-1] / rates[row]['d3rlpy'][-1]:.2f}", flush=True)
    precision = "" if args.precision == "fp32" else f" ({args.precision})"
    cell = lambda v, digits=1: f"{statistics.median(v):.{digits}f} [{min(v):.{digits}f}, {max(v):.{digits}f}]"  # noqa: E731
    rows = []
    for row in args.algos:
        algo, kind, _, settings = SPEED[row]
        ratio = [a / b for a, b in zip(rates[row]["offrl"], rates[row]["d3rlpy"])]
        rows.append([algo, DATA_TEXT[kind], settings["batch_size"], steps_per_interval[row], cell(rates[row]["offrl"]),
                     cell(rates[row]["d3rlpy"]), cell(ratio, 2)])
    body = (
        f"{args.size:,} transitions per dataset (8-dim vectors with 4 actions; single 84x84 uint8 frames stacked 4 at "
        f"sampling time); {args.threads} torch threads; each library's training loop in a fresh process, {args.reps} "
        f"repetitions alternating order, {intervals} timed intervals after a warm-up one; median [min, max] steps/s. "
        f"Settings: `{json.dumps({row: SPEED[row][3] for row in args.algos})}`."
        + ("" if args.precision == "fp32" else f" offrl in mixed precision ({args.precision}: bfloat16 products, float32 "
           "output layers, parameters and optimizer states), d3rlpy in float32.") + "\n\n"
        + markdown_table(["algorithm", "data", "batch", "steps per interval", f"offrl{precision} steps/s",
                          f"d3rlpy {args.d3rlpy_version} steps/s", "offrl / d3rlpy"], rows)
    )
    flag = "" if args.precision == "fp32" else f" --precision {args.precision}"
    record(RESULTS, TITLE, f"training speed (`python benchmarks/discrete.py speed --algos {','.join(args.algos)}{flag}`)", body)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["quality", "speed"])
    parser.add_argument("--d3rlpy-python", default=str(ROOT / ".venv-d3rlpy" / "bin" / "python"))
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--env", default="CartPole-v1", choices=sorted(ENVS))
    parser.add_argument("--expert", help="checkpoint of an earlier expert run (its evaluations.csv two levels up)")
    parser.add_argument("--algos", help=f"quality: offrl names (default {','.join(QUALITY)}); speed: rows (default "
                                        f"{','.join(SPEED)})")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--epsilon", type=float, default=0.2)
    parser.add_argument("--episodes", type=int, default=100, help="episodes of the noisy expert in the dataset")
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--interval", type=int, help="speed: steps per timed interval (default: each row's)")
    parser.add_argument("--intervals", type=int, default=3)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="speed: offrl's gradient steps in float32 or mixed bfloat16 (d3rlpy trains in float32)")
    args = parser.parse_args()
    args.algos = args.algos.split(",") if args.algos else list(QUALITY if args.mode == "quality" else SPEED)
    done = subprocess.run([args.d3rlpy_python, "-c", "import d3rlpy; print(d3rlpy.__version__)"], capture_output=True, text=True)
    args.d3rlpy_version = done.stdout.strip().splitlines()[-1] if done.returncode == 0 else "?"
    return args


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        print(json.dumps(offrl_speed_worker(json.loads(Path(sys.argv[2]).read_text()))))
    else:
        arguments = parse_args()
        quality(arguments) if arguments.mode == "quality" else speed(arguments)
