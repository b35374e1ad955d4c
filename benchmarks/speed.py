"""Training speed of offrl against d3rlpy, side by side: same data, same settings, same run.

    python benchmarks/speed.py --quick                 # a few minutes: one repetition, short intervals
    python benchmarks/speed.py                         # 3 repetitions, 1M transitions
    python benchmarks/speed.py --algos td3_bc,cql --reps 5 --device cuda
    python benchmarks/speed.py --precision bf16        # offrl in mixed precision (bfloat16 products), d3rlpy float32

For every algorithm both libraries implement, gradient steps per second of each library's own
training loop (offrl's ``train_offline``, d3rlpy's ``fit``: sampling, the update and the loop's
bookkeeping; no evaluation, no logs to disk beyond offrl's metrics CSV). Each measurement runs in a
fresh process (d3rlpy in its own virtual environment, ``--d3rlpy-python``; it pins gymnasium 1.0),
both with the same number of torch threads; within a repetition the two libraries alternate which
goes first. A process trains ``interval x (intervals + 1)`` steps and reports the rate of every
interval but the first (warm-up). Settings (widths, batch size, sampled actions) are the papers',
the same dictionary as ``benchmarks/quality.py``, given to both libraries.

The matmul floor of the TD3+BC step is measured in the same run: every matrix product one
TD3+BC gradient step needs (critic update every step, actor every second step, forward and
backward, no wasted weight gradients), each timed alone as a contiguous ``torch.mm`` with the
same threads, summed. No implementation of that step can be faster than this sum on this machine.

For every algorithm, the matrix-product bound of offrl's own step is measured the same way, with
the products' shapes read by the profiler from a few of offrl's updates (``--no-bound`` skips it).
Where offrl's products are the algorithm's necessary ones (counted by hand for TD3+BC, SAC, IQL and
CQL: nothing is computed twice or thrown away), the bound caps any implementation on this machine,
and the table shows what share of it each library reaches.

Data: a synthetic D4RL-layout file with Hopper's shapes (1000-step episodes; 1M transitions,
100k with ``--quick``), read by offrl from the HDF5 file and by d3rlpy from the same arrays as npz.
The table is appended to benchmarks/results/speed.md with machine, versions and date.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS_DIR, ROOT, markdown_table, record, refuse_unknown, run_worker  # noqa: E402

WORKER = Path(__file__).resolve().parent / "speed_d3rlpy.py"
RESULTS = RESULTS_DIR / "speed.md"
TITLE = ("Speed benchmark results\n\nRecorded by `python benchmarks/speed.py`: gradient steps per second of each library's "
         "training loop on the same data with the same settings, median over repetitions [min, max]")

BOUND_WARMUP, BOUND_PROFILED = 4, 4  # updates before the profiled ones (PLAS's VAE pre-training among them), profiled
# Steps per timed interval: about 3 s for the slower library on a 2-core CPU.
INTERVALS = {"bc": 600, "td3": 300, "td3_bc": 300, "sac": 200, "iql": 200, "awac": 120, "crr": 150, "cql": 30,
             "cal_ql": 30, "bcq": 60, "plas": 60, "rebrac": 40, "dt": 100}
EXTRA_SETTINGS = {  # online learners trained offline, with the paper widths and batch
    "td3": {"discount": 0.99, "tau": 0.005, "policy_noise": 0.2, "noise_clip": 0.5, "policy_freq": 2, "num_critics": 2,
            "hidden_dims": (256, 256), "batch_size": 256, "actor_lr": 3e-4, "critic_lr": 3e-4},
    "sac": {"hidden_dims": (256, 256), "batch_size": 256, "actor_lr": 3e-4, "critic_lr": 3e-4, "alpha_lr": 3e-4,
            "discount": 0.99, "tau": 0.005, "init_alpha": 1.0, "learn_alpha": True, "num_critics": 2},
}


def speed_settings(algo: str, interval: int) -> dict[str, Any]:
    from quality import settings_for

    settings = dict(EXTRA_SETTINGS[algo]) if algo in EXTRA_SETTINGS else settings_for(algo, "hopper-medium", 10**6)
    if algo == "plas":  # the VAE pre-trains during the warm-up interval only: timed steps are full PLAS steps
        settings["vae_pretrain_steps"] = interval
    if algo == "dt":
        settings["warmup_steps"] = interval
    return settings


# ---------------------------------------------------------------- workers (each in its own process)


def offrl_worker(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    import offrl

    from offrl.train.seed_group import run_seed_group

    torch.set_num_threads(job["threads"])
    dataset = offrl.load_dataset(job["hdf5"])
    steps = job["interval"] * (job["intervals"] + 1)
    seeds = [job["seed"] + k for k in range(job.get("seeds", 1))]  # several: one batched model (offrl train --seeds)
    with tempfile.TemporaryDirectory() as work:
        def one_seed(seed: int):
            def run():
                algo = offrl.make_algo(job["algo"], dataset.observation_space, dataset.action_space, seed=seed,
                                       device=job["device"], **job["settings"])
                offrl.train_offline(algo, dataset, steps=steps, eval_every=0, log_every=job["interval"], seed=seed,
                                    run_dir=Path(work) / f"seed-{seed}", checkpoint_every=steps, progress=False,
                                    tensorboard=False, precision=job.get("precision", "fp32"))
            return run

        run_seed_group([one_seed(seed) for seed in seeds], batched=len(seeds) > 1)
        with open(Path(work) / f"seed-{seeds[0]}" / "metrics.csv") as handle:  # every seed steps at the group's rate
            rates = [float(row["steps_per_sec"]) for row in csv.DictReader(handle)]
    return {"steps_per_sec": rates[1:], "version": offrl.__version__}


def floor_worker(job: dict[str, Any]) -> dict[str, Any]:
    """Seconds of the matrix products of one TD3+BC step, each timed alone."""
    import torch

    torch.set_num_threads(job["threads"])
    device = torch.device(job["device"])
    batch, obs, act, hidden = job["batch"], job["obs_dim"], job["act_dim"], job["hidden"]
    shapes: dict[tuple[int, int, int], float] = {}

    def add(widths: list[int], count: float, *, forward=True, weight_grads=True, input_grads: str = "none") -> None:
        for index, (k, n) in enumerate(zip(widths[:-1], widths[1:])):
            if forward:
                shapes[(batch, k, n)] = shapes.get((batch, k, n), 0) + count
            if weight_grads:
                shapes[(k, batch, n)] = shapes.get((k, batch, n), 0) + count
            if input_grads == "all" or (input_grads == "hidden" and index > 0):
                shapes[(batch, n, k)] = shapes.get((batch, n, k), 0) + count

    actor, critic = [obs, *hidden, act], [obs + act, *hidden, 1]
    add(actor, 1, weight_grads=False)  # target actor
    add(critic, 2, weight_grads=False)  # twin target critics
    add(critic, 2, input_grads="hidden")  # twin critics, forward and backward
    add(actor, 0.5, input_grads="hidden")  # actor step every second update: actor forward and backward,
    add(critic, 0.5, weight_grads=False, input_grads="all")  # Q1 forward and its gradient with respect to the action

    seconds = sum(count * matmul_seconds((1, *shape), device, job["precision"]) for shape, count in shapes.items())
    flops = sum(count * 2 * m * k * n for (m, k, n), count in shapes.items())
    return {"seconds": seconds, "mflop": flops / 1e6}


def matmul_seconds(shape: tuple[int, int, int, int], device, precision: str = "fp32") -> float:
    """Median seconds of one contiguous ``[b, m, k] @ [b, k, n]`` product (``torch.mm`` when b is 1) alone;
    in bfloat16 for ``precision`` bf16 (all of them, output layers too: a bound may only be optimistic)."""
    import torch

    b, m, k, n = shape
    lead = () if b == 1 else (b,)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, w, out = (torch.randn(*lead, rows, cols, device=device, dtype=dtype) for rows, cols in ((m, k), (k, n), (m, n)))
    product = torch.bmm if lead else torch.mm
    samples = []
    for _ in range(7):
        for _ in range(5):
            product(a, w, out=out)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(20):
            product(a, w, out=out)
        if device.type == "cuda":
            torch.cuda.synchronize()
        samples.append((time.perf_counter() - start) / 20)
    return statistics.median(samples)


MATMULS = {"aten::mm": (0, 1), "aten::addmm": (1, 2), "aten::bmm": (0, 1), "aten::baddbmm": (1, 2)}  # operand positions


def bound_worker(job: dict[str, Any]) -> dict[str, Any]:
    """Seconds of the matrix products in one of offrl's gradient steps of ``job["algo"]``, each timed alone.

    The products are read from the profiler (their shapes, over ``profiled`` updates after
    ``warmup``), then each shape is timed as one contiguous mm/bmm. Nothing else an update does
    (activations, losses, the optimizer, attention kernels) is counted: a step of that algorithm,
    done with these products, cannot run faster on this machine.
    """
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    import offrl

    torch.set_num_threads(job["threads"])
    device = torch.device(job["device"])
    dataset = offrl.load_dataset(job["hdf5"])
    algo = offrl.make_algo(job["algo"], dataset.observation_space, dataset.action_space, seed=0, device=device,
                           **job["settings"])
    warmup, profiled = job["warmup"], job["profiled"]
    update_offline, calls = algo.update_offline, 0

    def marked(batch):  # train_offline makes every step an update_offline call
        nonlocal calls
        calls += 1
        if calls <= warmup:
            return update_offline(batch)
        with record_function("timed_update"):
            return update_offline(batch)

    algo.update_offline = marked
    with tempfile.TemporaryDirectory() as work, profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        offrl.train_offline(algo, dataset, steps=warmup + profiled, eval_every=0, log_every=warmup + profiled, seed=0,
                            run_dir=Path(work) / "run", progress=False, tensorboard=False, precision=job["precision"])
    events = prof.events()
    windows = [(e.time_range.start, e.time_range.end) for e in events if e.name == "timed_update"]
    counts: dict[tuple[int, int, int, int], int] = {}
    for event in events:
        if event.name not in MATMULS or not any(a <= event.time_range.start <= b for a, b in windows):
            continue
        parent = event.cpu_parent
        while parent is not None and parent.name not in MATMULS:
            parent = parent.cpu_parent
        if parent is not None:  # counted with the product that called it
            continue
        left, right = (event.input_shapes[i] for i in MATMULS[event.name])
        shape = (1, *left, right[-1]) if len(left) == 2 else (*left, right[-1])
        counts[shape] = counts.get(shape, 0) + 1
    seconds = sum(count * matmul_seconds(shape, device, job["precision"]) for shape, count in counts.items()) / profiled
    flops = sum(count * 2 * b * m * k * n for (b, m, k, n), count in counts.items()) / profiled
    return {"seconds": seconds, "mflop": flops / 1e6, "products": sum(counts.values()) / profiled}


# ---------------------------------------------------------------- driver



def summary(values: list[float], digits: int = 0) -> str:
    return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}, {max(values):.{digits}f}]"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100k transitions, one repetition, 2 short intervals")
    parser.add_argument("--algos", default=",".join(INTERVALS))
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3; 1 with --quick)")
    parser.add_argument("--intervals", type=int, default=None, help="timed intervals per process (default 3; 2 with --quick)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads for both libraries")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="offrl's gradient steps (and the floor's and bounds' products) in float32 or mixed bfloat16; "
                             "d3rlpy trains in float32")
    parser.add_argument("--size", type=int, default=None, help="transitions in the dataset (default 1M; 100k with --quick)")
    parser.add_argument("--no-bound", action="store_true", help="skip the per-algorithm matrix-product bound")
    parser.add_argument("--d3rlpy-python", default=str(ROOT / ".venv-d3rlpy" / "bin" / "python"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.reps = args.reps or (1 if args.quick else 3)
    args.intervals = args.intervals or (2 if args.quick else 3)
    args.size = args.size or (100_000 if args.quick else 1_000_000)
    return args


def main() -> None:
    args = parse_args()
    if args.worker:
        job = json.loads(Path(args.worker).read_text())
        workers = {"floor": floor_worker, "bound": bound_worker, "train": offrl_worker}
        result = workers[job["kind"]](job)
        print(json.dumps(result))
        return
    import numpy as np
    import torch

    from foundation import write_hopper_sized_d4rl
    from quality import data_values, export_npz

    import offrl

    algos = [name for name in args.algos.split(",") if name]
    refuse_unknown(algos, INTERVALS, "no speed settings for")
    scale = 0.5 if args.quick else 1.0
    results: dict[str, dict[str, list[float]]] = {
        name: {"offrl": [], "d3rlpy": [], "ratio": [], "bound": []} for name in algos
    }
    floors: list[float] = []
    versions: dict[str, str] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        hdf5 = work / "hopper-sized.hdf5"
        write_hopper_sized_d4rl(hdf5, args.size)
        dataset = offrl.load_dataset(hdf5)
        npz = export_npz(dataset, work / "hopper-sized.npz")
        obs_dim, act_dim = int(np.prod(dataset.observation_space.shape)), int(np.prod(dataset.action_space.shape))
        floor_job = {"kind": "floor", "threads": args.threads, "device": args.device, "batch": 256, "obs_dim": obs_dim,
                     "act_dim": act_dim, "hidden": [256, 256], "precision": args.precision}
        for rep in range(args.reps):
            for algo in algos:
                if algo == "td3_bc":  # the floor right before TD3+BC, so both see the machine in the same state
                    floor = run_worker([sys.executable, __file__, "--worker"], floor_job, work, "floor")
                    floors.append(floor["seconds"])
                    print(f"rep {rep}: TD3+BC matmul floor {floor['seconds'] * 1e3:.2f} ms ({floor['mflop']:.0f} MFLOP)",
                          flush=True)
                interval = max(10, int(INTERVALS[algo] * scale))
                settings = speed_settings(algo, interval)
                job = {"kind": "train", "algo": algo, "settings": settings, **data_values(settings, dataset),
                       "hdf5": str(hdf5), "data": str(npz), "interval": interval, "intervals": args.intervals,
                       "steps": interval * (args.intervals + 1),
                       "seed": rep, "device": args.device, "threads": args.threads, "precision": args.precision}
                order = ["offrl", "d3rlpy"] if rep % 2 == 0 else ["d3rlpy", "offrl"]
                if not args.no_bound:  # the matrix products of offrl's step, timed right before the pair
                    bound_job = {**job, "kind": "bound", "settings": speed_settings(algo, BOUND_WARMUP),
                                 "warmup": BOUND_WARMUP, "profiled": BOUND_PROFILED}
                    bound = run_worker([sys.executable, __file__, "--worker"], bound_job, work, f"{algo}-bound")
                    results[algo]["bound"].append(1 / bound["seconds"])
                rates = {}
                for library in order:
                    if library == "offrl":
                        out = run_worker([sys.executable, __file__, "--worker"], job, work, f"{algo}-offrl")
                    else:
                        out = run_worker([args.d3rlpy_python, str(WORKER)], job, work, f"{algo}-d3rlpy")
                    versions[library] = out["version"]
                    rates[library] = statistics.median(out["steps_per_sec"])
                    results[algo][library].append(rates[library])
                results[algo]["ratio"].append(rates["offrl"] / rates["d3rlpy"])
                bound_text = f"  matmul bound {results[algo]['bound'][-1]:7.1f}" if results[algo]["bound"] else ""
                print(f"rep {rep}: {algo:7s} offrl {rates['offrl']:7.1f}  d3rlpy {rates['d3rlpy']:7.1f}  "
                      f"x{rates['offrl'] / rates['d3rlpy']:.2f}{bound_text}", flush=True)

    rows = []
    for algo in algos:
        settings = speed_settings(algo, INTERVALS[algo])
        widths = settings.get("hidden_dims", (settings.get("embed_dim"),))
        rows.append([algo, settings["batch_size"], "x".join(str(w) for w in widths), summary(results[algo]["offrl"], 1),
                     summary(results[algo]["d3rlpy"], 1), summary(results[algo]["ratio"], 2)])
    offrl_column = "offrl steps/s" if args.precision == "fp32" else f"offrl ({args.precision}) steps/s"
    table = markdown_table(["algorithm", "batch", "widths", offrl_column, "d3rlpy steps/s", "offrl / d3rlpy"], rows)
    precision = "" if args.precision == "fp32" else (
        f"offrl in mixed precision ({args.precision}: hidden products in bfloat16, output layers, parameters and "
        f"optimizer states float32), d3rlpy in float32; products of the floor and bounds timed in bfloat16; ")
    lines = [f"offrl {versions.get('offrl')}, d3rlpy {versions.get('d3rlpy')}; {precision}{args.threads} torch threads, device "
             f"{args.device}; {args.size:,} transitions (Hopper shapes); {args.reps} repetition(s) x {args.intervals} timed "
             f"interval(s) per process; wall {time.perf_counter() - started:.0f} s", "", table, ""]
    if not args.no_bound:
        lines += ["Matrix-product bound: the steps/s of offrl's step if it did nothing but its matrix products, each "
                  "timed alone as one contiguous mm/bmm (shapes read by the profiler from offrl's own update; "
                  "measured right before each pair). Each library's rate is given as a share of the bound of its "
                  "repetition; 3x d3rlpy is within reach only where d3rlpy runs below a third of it.", ""]
        bound_rows = []
        for algo in algos:
            bounds = results[algo]["bound"]
            offrl_share = [100 * r / b for r, b in zip(results[algo]["offrl"], bounds)]
            d3rlpy_share = [100 * r / b for r, b in zip(results[algo]["d3rlpy"], bounds)]
            reach = "yes" if statistics.median(d3rlpy_share) < 100 / 3 else "no"
            bound_rows.append([algo, summary(bounds, 1), summary(offrl_share), summary(d3rlpy_share), reach])
        lines += [markdown_table(["algorithm", "bound steps/s", "offrl % of bound", "d3rlpy % of bound",
                                  "3x d3rlpy possible"], bound_rows), ""]
    if floors:
        shares = [rate * floor * 100 for rate, floor in zip(results["td3_bc"]["offrl"], floors)]
        lines.append(f"TD3+BC matmul floor (batch 256, 256x256, measured before each TD3+BC pair): "
                     f"{statistics.median(floors) * 1e3:.2f} ms per step = {summary([1 / f for f in floors])} steps/s; "
                     f"offrl's TD3+BC runs at {summary(shares)}% of the floor of its repetition")
    heading = ("quick" if args.quick else "full") + ("" if args.precision == "fp32" else f", offrl {args.precision}")
    record(RESULTS, TITLE, f"{heading}, {args.device}, {torch.get_num_threads()} threads in the driver", "\n".join(lines))


if __name__ == "__main__":
    main()
