"""Foundation numbers: HDF5 load time of 1M Hopper-sized transitions, batch sampling time,
the time of one evaluation (10 HalfCheetah episodes in the trainer's vector env) and gradient
steps per second of every registered algorithm with its paper defaults.

    python benchmarks/foundation.py            # full: 1M transitions, 2,000 timed steps per algorithm
    python benchmarks/foundation.py --quick    # 100k transitions, 100 steps, one run per algorithm
    python benchmarks/foundation.py --algos bc,td3_bc,iql

Prints a table and appends it, with machine, versions and date, to
benchmarks/results/foundation.md.
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

import offrl
from offrl.data import UniformSampler, load_dataset
from offrl.spaces import as_float32
from offrl.train.evaluate import evaluate, evaluation_slots, make_vector_env, torch_policy
from offrl.train.run import make_offline_sampler
from offrl.train.trainer import train

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS_DIR, markdown_table, record, refuse_unknown  # noqa: E402

RESULTS = RESULTS_DIR / "foundation.md"


def write_hopper_sized_d4rl(path: Path, n: int) -> None:
    """A D4RL-layout file with Hopper's shapes (obs 11, action 3) and 1000-step episodes."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f.create_dataset("observations", data=rng.normal(size=(n, 11)).astype(np.float32))
        f.create_dataset("next_observations", data=rng.normal(size=(n, 11)).astype(np.float32))
        f.create_dataset("actions", data=rng.uniform(-1, 1, size=(n, 3)).astype(np.float32))
        f.create_dataset("rewards", data=rng.normal(size=n).astype(np.float32))
        f.create_dataset("terminals", data=np.zeros(n, bool))
        f.create_dataset("timeouts", data=(np.arange(n) % 1000) == 999)
        f.create_dataset("infos/qpos", data=rng.normal(size=(n, 6)))
        f.create_dataset("infos/qvel", data=rng.normal(size=(n, 6)))


def time_load(path: Path, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        dataset = load_dataset(path)
        times.append(time.perf_counter() - start)
    assert len(dataset) > 0
    return times


def time_algo(name: str, dataset, steps: int, warmup: int) -> tuple[float, str]:
    algo = offrl.make_algo(name, dataset.observation_space, dataset.action_space, seed=0)
    algo.total_updates = steps + warmup
    sampler, _ = make_offline_sampler(algo, dataset, seed=0)
    for _ in range(warmup):
        algo.update(sampler.sample())
    start = time.perf_counter()
    for _ in range(steps):
        algo.update(sampler.sample())
    speed = steps / (time.perf_counter() - start)
    cfg = algo.config
    width = f"hidden {list(cfg.hidden_dims)}" if hasattr(cfg, "hidden_dims") else f"embed {cfg.embed_dim}"
    return speed, f"batch {cfg.batch_size}, {width}"


def time_evaluation(env_id: str, episodes: int, slots: int, repeats: int) -> tuple[list[float], int]:
    """Seconds of the trainer's evaluation (``evaluate`` on ``make_vector_env``) with an untrained TD3+BC
    actor, and the environment steps of one evaluation."""
    envs = make_vector_env(env_id, slots)
    algo = offrl.make_algo("td3_bc", as_float32(envs.single_observation_space), envs.single_action_space, seed=0)
    policy = torch_policy(algo.act, algo.device)
    times = []
    for repeat in range(repeats + 1):  # the first one warms up
        start = time.perf_counter()
        result = evaluate(policy, envs, env_id=env_id, episodes=episodes, seed=repeat)
        times.append(time.perf_counter() - start)
    envs.close()
    return times[1:], int(sum(result.lengths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--algos", help="comma-separated algorithms to time (default: every registered one)")
    args = parser.parse_args()
    registered = [cls.name for cls in offrl.list_algos()]
    names = args.algos.split(",") if args.algos else registered
    refuse_unknown(names, registered, "unknown algorithm")  # before a minute of loading and sampling
    n = 100_000 if args.quick else 1_000_000
    steps, repeats = (100, 1) if args.quick else (2_000, 3)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hopper-sized.hdf5"
        write_hopper_sized_d4rl(path, n)
        load_times = time_load(path, 3)
        rows.append((f"HDF5 load + validate, {n:,} transitions (D4RL layout, with infos)", f"{statistics.median(load_times):.2f} s", f"min {min(load_times):.2f}, max {max(load_times):.2f}"))
        dataset = load_dataset(path)
    sampler = UniformSampler(dataset.to("cpu"), 256, seed=0)
    for _ in range(100):
        sampler.sample()
    start = time.perf_counter()
    for _ in range(2000):
        sampler.sample()
    rows.append(("sample a batch of 256", f"{(time.perf_counter() - start) / 2000 * 1e6:.1f} us", ""))
    defaults = inspect.signature(train).parameters  # evaluate as a default run of the trainer does
    env_id, episodes = "HalfCheetah-v5", defaults["eval_episodes"].default
    slots = evaluation_slots(defaults["eval_envs"].default, episodes)
    eval_times, env_steps = time_evaluation(env_id, episodes, slots, 1 if args.quick else 3)
    rows.append((f"one evaluation: {episodes} {env_id} episodes ({env_steps:,} steps) in a {slots}-slot vector env, TD3+BC actor",
                 f"{statistics.median(eval_times):.2f} s", f"min {min(eval_times):.2f}, max {max(eval_times):.2f}"))
    for name in names:
        timed = [time_algo(name, dataset, steps, warmup=20) for _ in range(repeats)]
        speeds = [speed for speed, _ in timed]
        rows.append((f"{name}: gradient steps/s ({timed[0][1]})", f"{statistics.median(speeds):.0f}", f"runs: {', '.join(f'{s:.0f}' for s in speeds)}"))

    table = markdown_table(["measure", "value", "spread"], [list(row) for row in rows])
    title = ("quick" if args.quick else "full") + (f" (--algos {args.algos})" if args.algos else "")
    record(RESULTS, "Foundation benchmark results", title, f"h5py {h5py.__version__}\n\n{table}")


if __name__ == "__main__":
    main()
