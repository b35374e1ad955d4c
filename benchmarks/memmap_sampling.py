"""Sampling throughput from a memory-mapped offrl-memmap dataset against the same data in memory.

A uint8 Atari-shaped dataset (84x84 frames, observations and next observations) is written with
``MemmapWriter``, then ``UniformSampler`` draws batches from it three ways:

- in memory: ``load_dataset(path, mmap=False)``, columns read into the process's memory;
- memory-mapped, warm: the files' pages already in the page cache (what training sees after the
  first pass over the data, when the dataset fits in the cache);
- memory-mapped, cold: the files' pages evicted first (``posix_fadvise(DONTNEED)``), and only the
  first 100 batches timed, so most sampled rows are read from disk (as for a dataset much larger
  than the page cache).

    python benchmarks/memmap_sampling.py            # about a minute; appends to results/memmap_sampling.md
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from offrl.data import UniformSampler, load_dataset
from offrl.data.formats.offrl_memmap import MemmapWriter

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS_DIR, markdown_table, record  # noqa: E402


def write_dataset(path: Path, rows: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    with MemmapWriter(path, capacity=rows) as writer:
        for start in range(0, rows, 5000):
            count = min(5000, rows - start)
            frames = rng.integers(0, 256, size=(count + 1, 84, 84), dtype=np.uint8)
            writer.append(
                observations=frames[:-1],
                actions=rng.integers(0, 18, size=count),
                rewards=rng.normal(size=count).astype(np.float32),
                next_observations=frames[1:],
                terminals=np.zeros(count, bool),
                timeouts=(np.arange(start, start + count) % 1000) == 999,
            )
        writer.close()


def evict(path: Path) -> None:
    """Drop the dataset's pages from the page cache (only these files, nobody else's)."""
    for file in path.rglob("*.npy"):
        descriptor = os.open(file, os.O_RDONLY)
        try:
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(descriptor)


def warm(path: Path) -> None:
    for file in path.rglob("*.npy"):
        with open(file, "rb") as handle:
            while handle.read(64 * 2**20):
                pass


def throughput(sampler: UniformSampler, *, seconds: float, max_batches: int) -> tuple[float, int]:
    """Batches per second over about ``seconds`` (at most ``max_batches`` batches)."""
    batches, start = 0, time.perf_counter()
    while batches < max_batches and time.perf_counter() - start < seconds:
        sampler.sample()  # the gathers copy every sampled row: each row is read
        batches += 1
    return batches / (time.perf_counter() - start), batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="transitions (2 x 7 KB of frames each)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=8.0, help="timing per case, split in rounds")
    parser.add_argument("--rounds", type=int, default=8, help="alternating rounds of the in-memory and warm cases")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a gather is memory-bound)")
    parser.add_argument("--dir", default=None, help="where to write the dataset (default: a temporary directory)")
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to the results file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    wall = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="offrl-memmap-bench-", dir=args.dir))
    path = root / "atari.offrl"
    try:
        start = time.perf_counter()
        write_dataset(path, args.rows, seed=0)
        write_seconds = time.perf_counter() - start
        size_mb = sum(f.stat().st_size for f in path.rglob("*.npy")) / 2**20

        start = time.perf_counter()
        in_memory = UniformSampler(load_dataset(path, mmap=False).to("cpu"), args.batch_size, seed=0)
        load_seconds = time.perf_counter() - start
        warm(path)
        mapped = UniformSampler(load_dataset(path).to("cpu"), args.batch_size, seed=0)
        # alternate short rounds of the two, so a change in the machine's load hits both alike
        rates: dict[str, list[float]] = {"in memory": [], "memory-mapped, page cache warm": []}
        counts = dict.fromkeys(rates, 0)
        for _ in range(args.rounds):
            for name, sampler in zip(rates, (in_memory, mapped)):
                rate, count = throughput(sampler, seconds=args.seconds / args.rounds, max_batches=10**9)
                rates[name].append(rate)
                counts[name] += count
        del in_memory, mapped, sampler
        gc.collect()  # unmap: the kernel keeps the pages a process maps in the cache
        evict(path)
        cold = UniformSampler(load_dataset(path).to("cpu"), args.batch_size, seed=1)
        rate, count = throughput(cold, seconds=args.seconds, max_batches=100)
        rates["memory-mapped, cold (read from disk)"], counts["memory-mapped, cold (read from disk)"] = [rate], count
    finally:
        shutil.rmtree(root, ignore_errors=True)

    reference = statistics.median(rates["in memory"])
    batch_mb = 2 * args.batch_size * 84 * 84 / 2**20
    rows = []
    for name, values in rates.items():
        rate = statistics.median(values)
        spread = f" [{min(values):,.0f}, {max(values):,.0f}]" if len(values) > 1 else ""
        rows.append(
            [
                name,
                f"{rate:,.0f}{spread}",
                f"{1000 / rate:.2f}",
                f"{rate * batch_mb:,.0f}",
                f"{rate / reference:.2f}",
                f"{counts[name]:,}",
            ]
        )
    header = ["storage", "batches/s (median [min, max] of rounds)", "ms/batch", "MB/s of frames", "vs in memory"]
    table = markdown_table([*header, "batches timed"], rows)
    body = (
        f"{args.rows:,} transitions of uint8 84x84 frames "
        f"(observations + next observations: {size_mb:,.0f} MB on disk); "
        f"batches of {args.batch_size} (`UniformSampler`, one `index_select` per column, on the CPU); "
        f"written in {write_seconds:.1f} s by `MemmapWriter`, read into memory in {load_seconds:.1f} s; "
        f"{args.rounds} alternating rounds of in memory / warm, then 100 cold batches; "
        f"wall {time.perf_counter() - wall:.0f} s\n\n{table}"
    )
    heading = f"{args.rows:,} frames, batch {args.batch_size}, {torch.get_num_threads()} torch threads"
    if args.no_record:
        print(body)
    else:
        record(RESULTS_DIR / "memmap_sampling.md", "Memory-mapped sampling benchmark results", heading, body)


if __name__ == "__main__":
    main()
