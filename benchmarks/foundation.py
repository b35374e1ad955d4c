"""Foundation numbers: HDF5 load time of 1M Hopper-sized transitions, batch sampling time,
and gradient steps per second of every registered algorithm (batch 256, 256x256 networks).

    python benchmarks/foundation.py            # full: 1M transitions, 2,000 timed steps per algorithm
    python benchmarks/foundation.py --quick    # 100k transitions, 300 steps

Prints a table and appends it, with machine, versions and date, to
benchmarks/results/foundation.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import torch

import offrl
from offrl.data import UniformSampler, load_dataset

RESULTS = Path(__file__).parent / "results" / "foundation.md"


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


def time_algo(name: str, dataset, steps: int, warmup: int) -> float:
    algo = offrl.make_algo(name, dataset.observation_space, dataset.action_space, seed=0)
    algo.total_updates = steps + warmup
    from offrl.train.run import prepare_training_data

    data, _ = prepare_training_data(algo, dataset)
    sampler = UniformSampler(data, algo.config.batch_size, seed=0)
    for _ in range(warmup):
        algo.update(sampler.sample())
    start = time.perf_counter()
    for _ in range(steps):
        algo.update(sampler.sample())
    return steps / (time.perf_counter() - start)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 100_000 if args.quick else 1_000_000
    steps = 300 if args.quick else 2_000
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
    for name in [cls.name for cls in offrl.list_algos()]:
        speeds = [time_algo(name, dataset, steps, warmup=50) for _ in range(3)]
        rows.append((f"{name}: gradient steps/s (batch 256, 256x256)", f"{statistics.median(speeds):.0f}", f"runs: {', '.join(f'{s:.0f}' for s in speeds)}"))

    header = (
        f"## {time.strftime('%Y-%m-%d')} — {'quick' if args.quick else 'full'}\n\n"
        f"machine: {cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads; "
        f"python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, "
        f"gymnasium {gym.__version__}, h5py {h5py.__version__}, offrl {offrl.__version__}\n"
    )
    table = ["| measure | value | spread |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    text = header + "\n" + "\n".join(table) + "\n"
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS, "a") as handle:
        if handle.tell() == 0:
            handle.write("# Foundation benchmark results\n\nRecorded by `python benchmarks/foundation.py`.\n\n")
        handle.write(text + "\n")


if __name__ == "__main__":
    main()
