"""What several seeds cost when offrl trains them as one batched model (``offrl train --seeds N``).

    python benchmarks/seeds.py --quick                  # a few minutes
    python benchmarks/seeds.py --seeds 5 --algos td3_bc,iql,sac --reps 3 --device cuda

For each algorithm, gradient steps per second of one seed alone and of N seeds trained together
(every network with a leading seed axis, one optimizer step for all; each seed still has its own
sampler, metrics and run directory), each measured in a fresh process with ``train_offline``, the two
alternating which goes first. Reported: the group's steps/s (every seed advances at that rate), the
cost of the N seeds relative to one seed (1.0 would be free), and the speed-up over training the N
seeds one after another. Settings are the papers' (``benchmarks/quality.py``), data is Hopper-shaped
as in ``benchmarks/speed.py``. The table is appended to benchmarks/results/seeds.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS_DIR, markdown_table, record, refuse_unknown, run_worker  # noqa: E402
from speed import INTERVALS, speed_settings, summary  # noqa: E402

RESULTS = RESULTS_DIR / "seeds.md"
TITLE = ("Batched seeds benchmark results\n\nRecorded by `python benchmarks/seeds.py`: one seed alone against N seeds "
         "trained as one batched model, median over repetitions [min, max]")
SPEED = Path(__file__).resolve().parent / "speed.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100k transitions, one repetition, short intervals")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--algos", default="bc,td3_bc,iql,sac,cql")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3; 1 with --quick)")
    parser.add_argument("--intervals", type=int, default=None, help="timed intervals per process (default 3; 2 with --quick)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=None, help="transitions (default 1M; 100k with --quick)")
    args = parser.parse_args()
    reps = args.reps or (1 if args.quick else 3)
    intervals = args.intervals or (2 if args.quick else 3)
    size = args.size or (100_000 if args.quick else 1_000_000)
    algos = [name for name in args.algos.split(",") if name]
    refuse_unknown(algos, INTERVALS, "no speed settings for")

    import torch

    from foundation import write_hopper_sized_d4rl
    from quality import data_values

    import offrl

    results = {name: {"one": [], "group": [], "cost": [], "speedup": []} for name in algos}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        hdf5 = work / "hopper-sized.hdf5"
        write_hopper_sized_d4rl(hdf5, size)
        dataset = offrl.load_dataset(hdf5)
        for rep in range(reps):
            for algo in algos:
                # the group is N times slower per step on a compute-bound CPU: its intervals are shorter
                interval = max(10, int(INTERVALS[algo] * (0.5 if args.quick else 1.0)))
                settings = speed_settings(algo, interval)
                base = {"kind": "train", "algo": algo, "settings": settings, **data_values(settings, dataset),
                        "hdf5": str(hdf5), "intervals": intervals, "seed": rep, "device": args.device,
                        "threads": args.threads}
                rates = {}
                for which in (["one", "group"] if rep % 2 == 0 else ["group", "one"]):
                    seeds = 1 if which == "one" else args.seeds
                    job = {**base, "seeds": seeds, "interval": max(10, interval // (1 if seeds == 1 else args.seeds))}
                    rates[which] = statistics.median(run_worker([sys.executable, str(SPEED), "--worker"], job, work, f"{algo}-{which}")["steps_per_sec"])
                    results[algo][which].append(rates[which])
                results[algo]["cost"].append(rates["one"] / rates["group"])
                results[algo]["speedup"].append(args.seeds * rates["group"] / rates["one"])
                print(f"rep {rep}: {algo:7s} one seed {rates['one']:7.1f}  {args.seeds} seeds {rates['group']:7.1f} steps/s  "
                      f"cost x{rates['one'] / rates['group']:.2f}", flush=True)

    rows = [[algo, summary(results[algo]["one"], 1), summary(results[algo]["group"], 1), summary(results[algo]["cost"], 2),
             summary(results[algo]["speedup"], 2)] for algo in algos]
    table = markdown_table(["algorithm", "1 seed steps/s", f"{args.seeds} seeds steps/s (each)",
                            f"time of {args.seeds} seeds / 1 seed", f"speed-up over {args.seeds} sequential runs"], rows)
    lines = [f"offrl {offrl.__version__}; {args.threads} torch threads, device {args.device}; {size:,} transitions "
             f"(Hopper shapes); {reps} repetition(s) x {intervals} timed interval(s) per process; "
             f"wall {time.perf_counter() - started:.0f} s", "", table]
    record(RESULTS, TITLE, f"{'quick' if args.quick else 'full'}, {args.device}, {args.seeds} seeds, "
           f"{torch.get_num_threads()} threads in the driver", "\n".join(lines))


if __name__ == "__main__":
    main()
