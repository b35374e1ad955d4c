"""The offline trainer: sample from a fixed dataset, update, evaluate, log, checkpoint.

The loop owns every side effect; the algorithm only sees batches. A run
directory can be resumed exactly: the checkpoint holds the weights,
optimizer states, every RNG (global and the sampler's) and the partial
metric sums, and evaluation seeds depend only on (seed, step).
"""

from __future__ import annotations

import dataclasses
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import offrl
from offrl.algos.base import Algorithm
from offrl.config import config_to_dict
from offrl.data.dataset import Dataset
from offrl.data.sampler import UniformSampler
from offrl.data.validation import check_actions
from offrl.errors import CheckpointError, OffrlError
from offrl.io import write_json
from offrl.spaces import space_to_json
from offrl.train import checkpoint as ckpt
from offrl.train.evaluate import EvalResult, check_env_compatible, evaluate, make_vector_env, torch_policy
from offrl.train.logging import MetricsLogger
from offrl.train.plot import plot_run
from offrl.train.progress import TrainingProgress
from offrl.train.run import (
    CONFIG,
    FINAL_EVAL,
    MetricAccumulator,
    default_run_dir,
    eval_seed,
    prepare_training_data,
    read_run_config,
    stop_on_interrupt,
)


@dataclasses.dataclass
class TrainResult:
    run_dir: Path
    step: int
    interrupted: bool
    final_eval: EvalResult | None
    behaviour_return: float
    learning_curve: Path | None


def train_offline(
    algo: Algorithm,
    dataset: Dataset,
    *,
    env: str | None = None,
    steps: int = 1_000_000,
    run_dir: str | Path | None = None,
    eval_every: int = 10_000,
    eval_episodes: int = 10,
    eval_envs: int = 10,
    seed: int = 0,
    log_every: int = 1_000,
    checkpoint_every: int | None = None,
    keep_checkpoints: int = 3,
    resume: bool = False,
    progress: bool = True,
    tensorboard: bool = True,
    run_info: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``algo`` on ``dataset`` for ``steps`` gradient steps in total (counting any resumed ones).

    Args:
        env: Gymnasium id to evaluate the deterministic policy on; no evaluation without it.
        run_dir: where config, logs, checkpoints and plots go (default ``runs/<algo>-<dataset>-<time>``).
        eval_every: evaluate every this many steps (0: only at the end).
        checkpoint_every: save every this many steps (default: ``eval_every``, or 10,000).
        resume: continue from the run directory's last checkpoint instead of starting fresh.
        run_info: extra entries for ``config.json`` (the CLI records how to reload the dataset).
    """
    if steps < 1:
        raise OffrlError(f"steps must be positive, got {steps}")
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(algo.name, dataset)
    checkpoint_dir = run_dir / ckpt.CHECKPOINT_DIR
    checkpoint_every = checkpoint_every or eval_every or 10_000
    _check_spaces(algo, dataset)
    envs = None
    if env is not None:
        envs = make_vector_env(env, max(1, min(eval_envs, eval_episodes)))
        check_env_compatible(envs, algo.observation_space, algo.action_space, env, f"the {algo.name} policy")
        check_actions(dataset.source, dataset.actions, envs.single_action_space)

    data, data_info = prepare_training_data(algo, dataset)
    sampler = UniformSampler(data, algo.config.batch_size, seed=seed)
    del data
    metrics = MetricAccumulator()
    behaviour_return = float(dataset.episode_returns().mean())
    fingerprint = dataset.fingerprint()

    def save(step: int, pending: bool) -> None:
        counts, sums = metrics.state()
        ckpt.save_checkpoint(
            checkpoint_dir,
            algo,
            step=step,
            trainer_state={"pending_eval": pending, "metric_counts": counts, "dataset_fingerprint": fingerprint},
            trainer_tensors={"sampler": sampler.get_state(), **sums},
            keep=keep_checkpoints,
        )

    if resume:
        start_step, pending_eval = _resume(algo, fingerprint, dataset.source, run_dir, sampler, metrics)
        algo.total_updates = max(algo.total_updates, steps)
    else:
        if ckpt.list_checkpoints(checkpoint_dir) or (run_dir / CONFIG).exists():
            raise CheckpointError(
                f"{run_dir} already holds a run: resume it (offrl train --resume {run_dir}) or choose another --run-dir"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        _seed_everything(seed)
        algo.total_updates = steps
        start_step, pending_eval = 0, False
        write_json(
            run_dir / CONFIG,
            {
                "offrl_version": offrl.__version__,
                "mode": "offline",
                "algo": algo.name,
                "algo_config": config_to_dict(algo.config),
                "observation_space": space_to_json(algo.observation_space),
                "action_space": space_to_json(algo.action_space),
                "env": env,
                "dataset": {
                    "source": dataset.source,
                    "fingerprint": fingerprint,
                    "transitions": len(dataset),
                    "episodes": dataset.num_episodes,
                    "behaviour_return": behaviour_return,
                    **data_info,
                },
                "train": {
                    "steps": steps,
                    "eval_every": eval_every,
                    "eval_episodes": eval_episodes,
                    "eval_envs": eval_envs,
                    "seed": seed,
                    "log_every": log_every,
                    "checkpoint_every": checkpoint_every,
                    "keep_checkpoints": keep_checkpoints,
                    "device": str(algo.device),
                },
                **(run_info or {}),
            },
        )
        save(0, pending=False)  # a run that dies before its first checkpoint can still be resumed

    logger = MetricsLogger(run_dir, resume_step=start_step if resume else None, tensorboard=tensorboard)
    policy = torch_policy(algo.act, algo.device)

    def run_eval(step: int, stop) -> EvalResult | None:
        algo.train(False)
        try:
            result = evaluate(
                policy,
                envs,
                env_id=env,
                episodes=eval_episodes,
                seed=eval_seed(seed, step),
                metadata=dataset.metadata,
                should_stop=lambda: stop.requested,
            )
        finally:
            algo.train(True)
        if result is not None:
            row = {"mean_return": result.mean_return, "std_return": result.std_return, "episodes": result.episodes}
            if result.normalized_score is not None:
                row["normalized_score"] = result.normalized_score
            logger.log_eval(step, row)
        return result

    step, last_eval, interrupted, saved_final = start_step, None, False, False
    display = TrainingProgress(total=steps, start=step, enabled=progress, label=f"{algo.name}")
    interval_start, interval_step = time.perf_counter(), step
    try:
        with stop_on_interrupt() as stop, display:
            if pending_eval and envs is not None:
                last_eval = run_eval(step, stop)
                interrupted = saved_final = last_eval is None
            while step < steps and not interrupted:
                if stop.requested:
                    interrupted = True
                    break
                metrics.add(algo.update(sampler.sample()))
                step += 1
                if step % log_every == 0 or step == steps:
                    elapsed = time.perf_counter() - interval_start
                    speed = (step - interval_step) / elapsed if elapsed > 0 else 0.0
                    logger.log_train(step, {**metrics.means(), "steps_per_sec": speed})
                    metrics.reset()
                    interval_start, interval_step = time.perf_counter(), step
                    display.update(step, speed)
                elif step % 50 == 0:
                    display.update(step)
                paused = time.perf_counter()  # evaluation and checkpoint time is not training speed
                if envs is not None and ((eval_every and step % eval_every == 0) or step == steps):
                    last_eval = run_eval(step, stop)
                    if last_eval is None:
                        save(step, pending=True)
                        interrupted = saved_final = True
                        break
                    display.evaluation(step, _eval_text(last_eval))
                if step % checkpoint_every == 0 and step < steps:
                    save(step, pending=False)
                interval_start += time.perf_counter() - paused
            if not saved_final:
                save(step, pending=False)
            if interrupted:
                display.line(
                    f"interrupted at step {step}: checkpoint saved; continue with: offrl train --resume {run_dir}"
                )
    finally:
        logger.close()
        if envs is not None:
            envs.close()

    if last_eval is not None and not interrupted:
        write_json(
            run_dir / FINAL_EVAL,
            {**last_eval.to_json(), "step": step, "algo": algo.name, "behaviour_return": behaviour_return},
        )
    curve = plot_run(run_dir, title=f"{algo.name} on {Path(dataset.source).name}", behaviour_return=behaviour_return)
    return TrainResult(
        run_dir=run_dir,
        step=step,
        interrupted=interrupted,
        final_eval=last_eval if not interrupted else None,
        behaviour_return=behaviour_return,
        learning_curve=curve,
    )


def _eval_text(result: EvalResult) -> str:
    text = f"{result.mean_return:.1f} ± {result.std_return:.1f}"
    if result.normalized_score is not None:
        text += f" ({result.normalized_score:.1f} normalized)"
    return text


def _check_spaces(algo: Algorithm, dataset: Dataset) -> None:
    algo_obs, data_obs = algo.observation_space, dataset.observation_space
    if getattr(algo_obs, "shape", None) != getattr(data_obs, "shape", None) or type(algo_obs) is not type(data_obs):
        raise OffrlError(f"{dataset.source}: observations {data_obs} do not match the algorithm's {algo_obs}")
    if type(algo.action_space) is not type(dataset.action_space) or algo.action_space.shape != dataset.action_space.shape:
        raise OffrlError(f"{dataset.source}: actions {dataset.action_space} do not match the algorithm's {algo.action_space}")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _resume(
    algo: Algorithm, fingerprint: str, source: str, run_dir: Path, sampler: UniformSampler, metrics: MetricAccumulator
) -> tuple[int, bool]:
    saved = read_run_config(run_dir)
    if saved.get("algo") != algo.name:
        raise CheckpointError(f"{run_dir}: the run trained {saved.get('algo')!r}, not {algo.name!r}")
    if saved.get("algo_config") != config_to_dict(algo.config):
        changed = sorted(
            k for k in config_to_dict(algo.config) if saved.get("algo_config", {}).get(k) != config_to_dict(algo.config)[k]
        )
        raise CheckpointError(f"{run_dir}: the algorithm config differs from the run's ({', '.join(changed)})")
    meta, tensors = ckpt.read_checkpoint(run_dir, device=algo.device)
    saved_fingerprint = meta.get("trainer", {}).get("dataset_fingerprint")
    if saved_fingerprint is not None and saved_fingerprint != fingerprint:
        raise CheckpointError(f"{run_dir}: the dataset {source} is not the one this run was trained on (its content changed)")
    ckpt.restore_algo(algo, meta, tensors, source=str(run_dir))
    ckpt.restore_rng(meta, tensors)
    trainer = ckpt.trainer_tensors(tensors)
    sampler.set_state(trainer["sampler"].cpu())
    metrics.load(meta["trainer"].get("metric_counts", {}), trainer)
    return int(meta["step"]), bool(meta["trainer"].get("pending_eval", False))
