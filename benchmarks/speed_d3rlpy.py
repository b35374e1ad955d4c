"""The d3rlpy side of benchmarks/speed.py, run in d3rlpy's own virtual environment:

    .venv-d3rlpy/bin/python benchmarks/speed_d3rlpy.py JOB.json

Trains with ``fit`` (no evaluators, no logs, no progress bar) for ``interval * (intervals + 1)``
gradient steps and prints, as JSON, the gradient steps per second of each interval after the
first (the first is warm-up). Times are taken by ``fit``'s per-step callback, so they are the
throughput of d3rlpy's own training loop, sampling included. It imports nothing from offrl.
"""

from __future__ import annotations

import json
import sys
import time

import d3rlpy
import torch
from quality_d3rlpy import dataset_and_algo


def main() -> None:
    job = json.loads(open(sys.argv[1]).read())
    torch.set_num_threads(job["threads"])
    dataset, algo = dataset_and_algo(job)
    interval, marks = job["interval"], []

    def callback(_algo, _epoch: int, total_step: int) -> None:
        if total_step % interval == 0:
            if job["device"].startswith("cuda"):
                torch.cuda.synchronize()
            marks.append(time.perf_counter())

    steps = interval * (job["intervals"] + 1)
    algo.fit(
        dataset, n_steps=steps, n_steps_per_epoch=steps, experiment_name="speed", with_timestamp=False,
        logger_adapter=d3rlpy.logging.NoopAdapterFactory(), show_progress=False, callback=callback,
    )
    rates = [interval / (b - a) for a, b in zip(marks[:-1], marks[1:])]
    print(json.dumps({"steps_per_sec": rates, "version": d3rlpy.__version__}))


if __name__ == "__main__":
    main()
