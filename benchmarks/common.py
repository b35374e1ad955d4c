"""What every benchmark records next to its table: the machine, the versions, the date."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import offrl

RESULTS_DIR = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def machine_line() -> str:
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"machine: {cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, {device}; "
        f"python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, "
        f"gymnasium {gym.__version__}, offrl {offrl.__version__}"
    )


def record(path: Path, title: str, heading: str, body: str) -> None:
    """Print ``body`` under a dated heading and append it to the results file ``path``."""
    text = f"## {time.strftime('%Y-%m-%d')} — {heading}\n\n{machine_line()}\n\n{body.rstrip()}\n"
    print(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        if handle.tell() == 0:
            handle.write(f"# {title}\n\n")
        handle.write(text + "\n")


def refuse_unknown(names: list[str], known, what: str) -> None:
    """Stop with one line naming every entry of ``names`` not in ``known``, before any slow work starts."""
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f"{what} {', '.join(unknown)}: choose from {', '.join(known)}")


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def run_worker(command: list[str], job: dict[str, Any], work: Path, name: str) -> dict[str, Any]:
    """Write ``job`` as ``work/name.json``, run ``command + [that path]`` in a fresh process (from the repository
    root, with the benchmarks importable) and return the JSON object its last line of output holds."""
    path = work / f"{name}.json"
    path.write_text(json.dumps(job))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    done = subprocess.run([*command, str(path)], capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed: {(done.stderr.strip().splitlines() or ['no output'])[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
