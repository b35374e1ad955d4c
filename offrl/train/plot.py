"""The learning-curve PNG of a run, drawn from its CSV logs."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from offrl.io import atomic_path
from offrl.train.logging import EVAL_CSV, TRAIN_CSV, read_csv

LEARNING_CURVE = "learning_curve.png"
LOSS_KEYS = ("critic_loss", "actor_loss", "bc_loss", "nll_loss", "value_loss")


_pyplot = threading.Lock()  # matplotlib is not thread-safe; the seeds of a batched group plot from their threads


def plot_run(run_dir: Path, *, title: str = "", behaviour_return: float | None = None) -> Path:
    with _pyplot:
        return _plot_run(run_dir, title, behaviour_return)


def _plot_run(run_dir: Path, title: str, behaviour_return: float | None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evals = [row for row in read_csv(run_dir / EVAL_CSV) if row.get("mean_return")]  # not validation-only rows
    train = read_csv(run_dir / TRAIN_CSV)
    panels = (1 if evals else 0) + (1 if train else 0) or 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4), squeeze=False)
    axes = list(axes[0])
    if evals:
        ax = axes.pop(0)
        steps = np.array([float(r["step"]) for r in evals])
        mean = np.array([float(r["mean_return"]) for r in evals])
        std = np.array([float(r["std_return"]) for r in evals])
        ax.plot(steps, mean, marker="o", label="policy (deterministic)")
        ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
        if behaviour_return is not None:
            ax.axhline(behaviour_return, color="gray", linestyle="--", label="dataset behaviour")
        ax.set_xlabel("gradient steps")
        ax.set_ylabel("episode return")
        ax.set_title("evaluation")
        ax.legend()
    if train:
        ax = axes.pop(0)
        steps = np.array([float(r["step"]) for r in train])
        for key in LOSS_KEYS:
            if key in train[0]:
                values = np.array([float(r[key]) if r.get(key) not in (None, "") else np.nan for r in train])
                ax.plot(steps, values, label=key)
        ax.set_xlabel("gradient steps")
        ax.set_title("training losses")
        if any(key in train[0] for key in LOSS_KEYS):
            ax.set_yscale("symlog")
            ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = run_dir / LEARNING_CURVE
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
