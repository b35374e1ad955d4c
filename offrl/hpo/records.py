"""What a search leaves behind: the lineage table, its plot, and the elite as a normal run directory."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from offrl.algos.base import Algorithm
from offrl.config import config_to_dict
from offrl.io import atomic_path, write_json, write_text
from offrl.spaces import space_to_json
from offrl.train import checkpoint as ckpt
from offrl.train.plot import _pyplot
from offrl.train.run import CONFIG

LINEAGE = "lineage.csv"
PLOT = "search.png"
ELITE_DIR = "elite"
FIXED_COLUMNS = ("generation", "member", "parent", "mutation", "fitness", "selection_fitness", "steps", "elite")


def write_lineage(path: Path, rows: list[dict[str, Any]]) -> None:
    """All rows so far, rewritten atomically (a search resumed from a generation drops later rows first)."""
    columns = list(FIXED_COLUMNS)
    for row in rows:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def read_lineage(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return [dict(row) for row in csv.DictReader(handle)]


def plot_search(path: Path, rows: list[dict[str, Any]], hyperparameters: list[str], *, title: str = "") -> Path | None:
    """Fitness per generation (every member, best, mean) and each hyperparameter's values over generations."""
    if not rows:
        return None
    with _pyplot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

        generations = np.array([int(r["generation"]) for r in rows])
        fitness = np.array([float(r["fitness"]) for r in rows])
        shown = [h for h in hyperparameters if any(_number(r.get(h)) is not None for r in rows)]
        layers = [_number(r.get("hidden_layers")) for r in rows]
        if any(v is not None for v in layers):
            shown += ["hidden_layers", "hidden_units"]
        panels = 1 + len(shown)
        columns = min(panels, 3)
        fig, axes = plt.subplots(-(-panels // columns), columns, figsize=(5 * columns, 3.6 * -(-panels // columns)), squeeze=False)
        axes = list(axes.flat)
        ax = axes[0]
        unique = np.unique(generations)
        ax.scatter(generations, fitness, s=12, alpha=0.4, color="gray", label="members")
        ax.plot(unique, [fitness[generations == g].max() for g in unique], marker="o", label="best")
        ax.plot(unique, [fitness[generations == g].mean() for g in unique], marker=".", label="mean")
        ax.set_xlabel("generation")
        ax.set_ylabel("fitness")
        ax.set_title(title or "fitness")
        ax.legend()
        for ax, name in zip(axes[1:], shown):
            values = [_number(r.get(name)) for r in rows]
            keep = [i for i, v in enumerate(values) if v is not None]
            ax.scatter(generations[keep], [values[i] for i in keep], c=fitness[keep], cmap="viridis", s=16)
            if name.endswith("lr") and all(values[i] > 0 for i in keep):
                ax.set_yscale("log")
            ax.set_xlabel("generation")
            ax.set_title(name)
        for ax in axes[:panels]:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for ax in axes[panels:]:
            ax.axis("off")
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=90)
        plt.close(fig)
    return path


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def save_elite(run_dir: Path, algo: Algorithm, *, steps: int, run_info: dict[str, Any]) -> Path:
    """The elite as a run directory ``offrl eval`` and ``offrl.load_policy`` read: config.json and a checkpoint."""
    elite_dir = run_dir / ELITE_DIR
    directory = elite_dir / ckpt.CHECKPOINT_DIR
    stem = ckpt.save_checkpoint(directory, algo, step=steps)
    for old in ckpt.list_checkpoints(directory):  # the previous elite (a resumed search may have saved a later one)
        if old != stem:
            old.with_suffix(".json").unlink(missing_ok=True)
            old.with_suffix(".safetensors").unlink(missing_ok=True)
    write_json(
        elite_dir / CONFIG,
        {
            "mode": "offline",
            "algo": algo.name,
            "algo_config": config_to_dict(algo.config),
            "observation_space": space_to_json(algo.observation_space),
            "action_space": space_to_json(algo.action_space),
            **run_info,
        },
    )
    return elite_dir
