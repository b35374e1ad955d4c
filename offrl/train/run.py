"""The run directory: what is in it and the pieces every trainer shares.

    run_dir/
      config.json          algorithm, its resolved config, dataset, env, trainer settings
      metrics.csv          training metrics every log interval
      evaluations.csv      evaluation returns (success rate, validation loss)
      tensorboard/         the same, as TensorBoard events
      checkpoints/         step_*.safetensors + step_*.json, latest.json
      final_eval.json      the last evaluation
      best/                with save_best: the checkpoint of the best evaluation, and best.json
      learning_curve.png
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from offrl.algos.base import Algorithm
from offrl.data.batch import Batch
from offrl.data.dataset import Dataset
from offrl.errors import CheckpointError

CONFIG = "config.json"
FINAL_EVAL = "final_eval.json"
BEST_DIR = "best"
SEEDS_FILE = "seeds.json"  # marks a directory of several seeds' runs (offrl train --seeds)


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    return read_record(run_dir, CONFIG, kind="run")


def enclosing_run(path: str | Path) -> Path | None:
    """The run directory ``path`` is, or is inside (``RUN/best``, ``RUN/checkpoints``, a checkpoint file there)."""
    path = Path(path)
    return next((d for d in (path, path.parent, path.parent.parent) if (d / CONFIG).is_file()), None)


def run_settings(path: str | Path) -> dict[str, Any]:
    """The ``config.json`` of the run ``path`` belongs to; empty for a checkpoint outside any run."""
    run = enclosing_run(path)
    return read_run_config(run) if run is not None else {}


def read_record(directory: str | Path, name: str, *, kind: str) -> dict[str, Any]:
    """The JSON file ``name`` that marks ``directory`` as an offrl ``kind`` directory (run, search)."""
    path = Path(directory) / name
    if not path.is_file():
        raise CheckpointError(f"{directory}: not an offrl {kind} directory (no {name})")
    try:
        return json.loads(path.read_text())
    except ValueError as error:
        raise CheckpointError(f"{path}: cannot parse: {error}") from None


def default_run_dir(algo_name: str, dataset: Dataset | None) -> Path:
    stem = Path(dataset.source).stem if dataset is not None and not dataset.source.startswith("<") else "run"
    return Path("runs") / f"{algo_name}-{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CheckpointError("--device cuda was asked for, but no CUDA device is available")
    return device


def reward_scale(dataset: Dataset, mode: str, scale: float) -> float:
    """Factor applied to rewards for training: IQL's locomotion ``scale / (max R - min R)`` or 1."""
    if mode == "none":
        return 1.0
    if mode == "returns_range":
        returns = dataset.episode_returns().astype(np.float64)
        spread = float(returns.max() - returns.min())
        # returns equal up to float rounding have no range to scale by (an absolute threshold let one ulp of
        # difference scale rewards by 1e10)
        return scale / spread if spread > 1e-5 * max(1.0, float(np.abs(returns).max())) else 1.0
    raise ValueError(f"unknown reward_normalization {mode!r}")


def prepare_training_data(algo: Algorithm, dataset: Dataset, *, fit: bool = True) -> tuple[Batch, dict[str, Any]]:
    """Set the algorithm's observation normalization from the dataset (unless ``fit`` is False: held-out data
    is seen as the training data's statistics see it) and move the data to its device."""
    config = algo.config
    keys = algo.encoder.normalized_keys  # None: every feature; a tuple: those dict keys
    if fit and getattr(config, "normalize_observations", False) and keys != ():
        algo.encoder.set_statistics(*dataset.observation_stats(eps=1e-3, keys=keys))
    data = dataset.to(algo.device)
    scale = reward_scale(
        dataset, getattr(config, "reward_normalization", "none"), float(getattr(config, "reward_scale", 1.0))
    )
    if scale != 1.0:
        data.rewards = data.rewards * scale
    needs = algo.dataset_columns()
    if "mc_returns" in needs:
        # scaled like the rewards the critic is trained on
        data.mc_returns = torch.as_tensor(dataset.returns_to_go(needs["mc_returns"]) * scale, device=algo.device)
    if "next_actions" in needs:
        data.next_actions = torch.as_tensor(dataset.next_actions(), device=algo.device)
    if fit:
        algo.set_dataset_info(dataset_info(dataset, scale))
    return data, {"reward_scale": scale}


def make_offline_sampler(algo: Algorithm, dataset: Dataset, *, seed: int, fit: bool = True):
    """The sampler of the algorithm's batch kind over ``dataset``, with normalization (``fit``) and extra columns set."""
    data, info = prepare_training_data(algo, dataset, fit=fit)
    if algo.batch_kind == "sequences":
        from offrl.data.sequences import SequenceSampler

        del data
        spec = algo.sequence_window()
        sampler = SequenceSampler(
            dataset, spec.length, algo.config.batch_size, pad=spec.pad, future=spec.future,
            first_transitions=spec.first_transitions, device=algo.device, seed=seed,
        )
        return sampler, info
    frames, keys = algo.frame_stacking()
    if frames > 1:
        from offrl.data.frames import FrameStackSampler, episode_row_starts

        starts = episode_row_starts(*dataset.episode_bounds)
        return FrameStackSampler(data, starts, frames, algo.config.batch_size, keys=keys, seed=seed), info
    from offrl.data.sampler import UniformSampler

    return UniformSampler(data, algo.config.batch_size, seed=seed), info


def dataset_info(dataset: Dataset, reward_scale: float = 1.0) -> dict[str, float]:
    """What an algorithm may know of its data: return and length statistics (returns as trained on)."""
    returns, lengths = dataset.episode_returns() * reward_scale, dataset.episode_lengths()
    return {
        "max_return": float(returns.max()),
        "mean_return": float(returns.mean()),
        "max_episode_length": int(lengths.max()),
        "reward_scale": reward_scale,
    }


def eval_seed(seed: int, step: int) -> int:
    """Environment seeds for the evaluation at ``step``: fixed by (seed, step), so a resumed run repeats them."""
    return int(np.random.SeedSequence([seed, step]).generate_state(1)[0] % (2**31 - 10_000))


class StopFlag:
    def __init__(self) -> None:
        self.requested = False


group_stop: StopFlag | None = None  # set while a seed group trains: its threads' loops stop on the main thread's Ctrl-C


@contextlib.contextmanager
def stop_on_interrupt() -> Iterator[StopFlag]:
    """First Ctrl-C (or SIGTERM) asks the loop to stop after the current step; a second one stops at once."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield group_stop or flag
        return

    def handler(signum, frame):  # noqa: ARG001
        if flag.requested:
            raise KeyboardInterrupt
        flag.requested = True

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class MetricAccumulator:
    """Sums of the per-step metric tensors on the device; read (one host sync) once per log interval."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, metrics: dict[str, torch.Tensor]) -> None:
        for key, value in metrics.items():
            if key in self.sums:
                self.sums[key] += value
                self.counts[key] += 1
            else:
                self.sums[key] = value.detach().clone().float()
                self.counts[key] = 1

    def means(self) -> dict[str, float]:
        if not self.sums:
            return {}
        keys = list(self.sums)
        values = torch.stack([self.sums[k] / self.counts[k] for k in keys]).tolist()
        return dict(zip(keys, values))

    def reset(self) -> None:
        self.sums.clear()
        self.counts.clear()

    def non_finite(self) -> list[str]:
        """The metrics whose sum since the last reset is NaN or infinite (one host sync)."""
        if not self.sums:
            return []
        keys = list(self.sums)
        finite = torch.isfinite(torch.stack([self.sums[k] for k in keys])).tolist()
        return [key for key, ok in zip(keys, finite) if not ok]

    def state(self) -> tuple[dict[str, int], dict[str, torch.Tensor]]:
        return dict(self.counts), {f"metric_sums/{k}": v for k, v in self.sums.items()}

    def load(self, counts: dict[str, int], tensors: dict[str, torch.Tensor]) -> None:
        self.counts = {k: int(v) for k, v in counts.items()}
        self.sums = {k: tensors[f"metric_sums/{k}"].clone() for k in self.counts}


def best_score(run_dir: Path) -> float | None:
    """The score of the run's best checkpoint so far (``save_best``), or None before the first."""
    path = Path(run_dir) / BEST_DIR / "best.json"
    return float(json.loads(path.read_text())["score"]) if path.is_file() else None


LR_SCHEDULES = ("constant", "linear", "cosine")


def learning_rate_factor(schedule: str, step: int, total: int, end_factor: float) -> float:
    """The fraction of each optimizer's initial learning rate at ``step`` of ``total``: constant, or decaying
    linearly or along a half cosine to ``end_factor`` at the last step (robomimic's linear decay: 0.1)."""
    progress = min(step / max(total, 1), 1.0)
    if schedule == "linear":
        return 1.0 + (end_factor - 1.0) * progress
    if schedule == "cosine":
        return end_factor + (1.0 - end_factor) * 0.5 * (1.0 + float(np.cos(np.pi * progress)))
    return 1.0


def set_learning_rates(algo: Algorithm, factor: float) -> None:
    """Every optimizer's learning rate as ``factor`` times its initial one (kept in the group as ``initial_lr``,
    which its state dict, and so the checkpoint, carries)."""
    for optimizer in algo.optimizers.values():
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
            group["lr"] = group["initial_lr"] * factor
