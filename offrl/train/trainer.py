"""One trainer for offline, online, hybrid and offline-to-online training.

Every iteration is one gradient step. ALF's two flags set the schedule:

- before ``rl_train_after_update_steps`` updates, training is offline only:
  batches come from the dataset and go through ``algo.update_offline``, and
  the environment is not touched (a value >= the total steps is pure offline
  training);
- afterwards, every ``rl_train_every_update_steps``-th update is an RL
  update: ``algo.update`` on a batch mixing dataset rows (``offline_ratio``
  of it) with online rows from the replay buffer; the others stay offline
  updates. The environment is stepped so that each online transition is
  followed by ``utd_ratio`` RL updates, after ``warmup_steps`` transitions of
  uniformly random actions.

Offline training is the schedule with no RL phase; online training has no
dataset and no offline phase; offline-to-online (``online_steps``) is an
offline phase of ``steps`` updates followed by ``online_steps`` RL updates
with the dataset kept in the sampler.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import tempfile
import time
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import numpy as np
import safetensors.torch
import torch

import offrl
from offrl.algos.base import Algorithm
from offrl.algos.registry import seeding_lock
from offrl.config import config_to_dict
from offrl.data.dataset import Dataset
from offrl.data.formats import save_dataset
from offrl.data.replay import ReplayBuffer
from offrl.data.sampler import MixedSampler, UniformSampler
from offrl.data.sequences import SequenceSampler
from offrl.data.validation import check_actions
from offrl.errors import CheckpointError, OffrlError, TrainingDiverged
from offrl.io import atomic_path, write_json
from offrl.nn.precision import update_context
from offrl.spaces import space_to_json
from offrl.train import checkpoint as ckpt
from offrl.train.collector import Collector
from offrl.train.evaluate import (
    EvalResult,
    check_env_compatible,
    check_video,
    evaluate,
    evaluation_slots,
    make_vector_env,
    video_suffix,
)
from offrl.train.logging import EVAL_CSV, TRAIN_CSV, MetricsLogger
from offrl.train.memory import keep_freed_memory
from offrl.train.plot import plot_run
from offrl.train.progress import TrainingProgress
from offrl.train.run import (
    BEST_DIR,
    LR_SCHEDULES,
    CONFIG,
    FINAL_EVAL,
    SEEDS_FILE,
    MetricAccumulator,
    best_score,
    default_run_dir,
    eval_seed,
    learning_rate_factor,
    make_offline_sampler,
    read_run_config,
    set_learning_rates,
    stop_on_interrupt,
)
from offrl.train.seed_group import enlist

REPLAY_BUFFER_FILE = "replay_buffer.safetensors"
DEFAULT_WARMUP_STEPS = 5_000


@dataclasses.dataclass
class TrainResult:
    run_dir: Path
    step: int
    interrupted: bool
    final_eval: EvalResult | None
    behaviour_return: float | None
    learning_curve: Path | None
    env_steps: int = 0
    offline_updates: int = 0
    rl_updates: int = 0


@dataclasses.dataclass
class Schedule:
    """Which update steps are RL updates, and how the environment is stepped (see the module docstring)."""

    mode: str  # offline | online | hybrid | offline-to-online
    total_steps: int
    rl_train_after_update_steps: int
    rl_train_every_update_steps: int
    offline_ratio: float | None
    utd_ratio: float
    warmup_steps: int
    num_envs: int
    buffer_size: int

    def is_rl_step(self, step: int) -> bool:
        """``step`` counts updates already done (0-based), as ALF's global counter."""
        return step >= self.rl_train_after_update_steps and step % self.rl_train_every_update_steps == 0

    @property
    def has_online_phase(self) -> bool:
        return self.rl_train_after_update_steps < self.total_steps

    def rl_updates_planned(self) -> int:
        start = self.rl_train_after_update_steps
        if start >= self.total_steps:
            return 0
        every = self.rl_train_every_update_steps
        first = -(-start // every) * every
        return max(0, (self.total_steps - 1 - first) // every + 1)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def make_schedule(
    algo: Algorithm,
    *,
    dataset: Dataset | None,
    env: str | None,
    steps: int,
    online_steps: int = 0,
    rl_train_after_update_steps: int | None = None,
    rl_train_every_update_steps: int = 1,
    offline_ratio: float | None | str = "default",
    utd_ratio: float = 1.0,
    warmup_steps: int | None = None,
    num_envs: int = 1,
    buffer_size: int = 1_000_000,
) -> Schedule:
    """Resolve the mode from what is given: see the module docstring and docs/training.md."""
    for name, value in (("steps", steps), ("online_steps", online_steps), ("rl_train_every_update_steps", rl_train_every_update_steps),
                        ("rl_train_after_update_steps", rl_train_after_update_steps)):
        if value is not None and (not isinstance(value, (int, np.integer)) or isinstance(value, bool)):
            raise OffrlError(f"{name} must be an integer, not {value!r}")
    if steps < 0 or online_steps < 0 or (steps + online_steps) < 1:
        raise OffrlError(f"steps must be positive (steps={steps}, online_steps={online_steps})")
    if rl_train_every_update_steps < 1:
        raise OffrlError("rl_train_every_update_steps must be at least 1")
    if rl_train_after_update_steps is not None and rl_train_after_update_steps < 0:
        raise OffrlError(f"rl_train_after_update_steps must be >= 0, not {rl_train_after_update_steps}")
    if not (isinstance(utd_ratio, (int, float)) and math.isfinite(utd_ratio) and utd_ratio > 0):
        raise OffrlError(f"utd_ratio must be a positive finite number, not {utd_ratio!r}")
    if offline_ratio not in ("default", None) and not (isinstance(offline_ratio, (int, float)) and 0.0 <= offline_ratio <= 1.0):
        raise OffrlError(f"offline_ratio must be a number in [0, 1] or None (the union, uniformly), not {offline_ratio!r}")
    total = steps + online_steps
    if online_steps > 0:
        if rl_train_after_update_steps is not None:
            raise OffrlError("give either online_steps or rl_train_after_update_steps, not both")
        if dataset is None:
            raise OffrlError("online_steps continues offline training online: it needs a dataset")
        after, mode = steps, "offline-to-online"
    elif rl_train_after_update_steps is not None:
        after = rl_train_after_update_steps
        mode = "offline" if after >= total else "online" if dataset is None else "hybrid"
    elif dataset is None:
        after, mode = 0, "online"
    elif algo.online and env is not None:
        after, mode = 0, "hybrid"
    else:
        after, mode = total, "offline"
    if after < total:
        if env is None:
            raise OffrlError(f"{mode} training steps an environment: pass env (--env)")
        if after > 0 and dataset is None:
            raise OffrlError("an offline pre-training phase (rl_train_after_update_steps > 0) needs a dataset")
        if dataset is None and rl_train_every_update_steps != 1:
            raise OffrlError("rl_train_every_update_steps interleaves offline updates: it needs a dataset")
    elif dataset is None:
        raise OffrlError("offline training needs a dataset")
    if offline_ratio == "default":
        offline_ratio = None if mode == "offline-to-online" else (0.5 if dataset is not None else 0.0)
    if dataset is None:
        offline_ratio = 0.0
    if warmup_steps is None:
        warmup_steps = DEFAULT_WARMUP_STEPS if after == 0 and mode != "offline" else 0
    schedule = Schedule(
        mode=mode,
        total_steps=total,
        rl_train_after_update_steps=min(after, total),
        rl_train_every_update_steps=rl_train_every_update_steps,
        offline_ratio=offline_ratio,
        utd_ratio=float(utd_ratio),
        warmup_steps=warmup_steps if after < total else 0,
        num_envs=num_envs,
        buffer_size=buffer_size,
    )
    planned = warmup_steps + int(np.ceil(schedule.rl_updates_planned() / utd_ratio)) + num_envs
    schedule.buffer_size = max(num_envs, min(buffer_size, planned)) if schedule.has_online_phase else 0
    return schedule


def train(
    algo: Algorithm,
    dataset: Dataset | None = None,
    *,
    env: str | None = None,
    steps: int = 1_000_000,
    online_steps: int = 0,
    rl_train_after_update_steps: int | None = None,
    rl_train_every_update_steps: int = 1,
    offline_ratio: float | None | str = "default",
    utd_ratio: float = 1.0,
    warmup_steps: int | None = None,
    num_envs: int = 1,
    buffer_size: int = 1_000_000,
    save_buffer: str | Path | None = None,
    init_from: str | Path | None = None,
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
    validation: Dataset | None = None,
    validation_batches: int = 10,
    save_best: str | None = None,
    lr_schedule: str = "constant",
    lr_end_factor: float = 0.0,
    goal_keys: Sequence[str] = (),
    video_episodes: int = 0,
    precision: str = "fp32",
) -> TrainResult:
    """Train ``algo`` for ``steps`` (+ ``online_steps``) gradient updates; see the module docstring.

    Args:
        dataset: offline data (required for offline, hybrid and offline-to-online training).
        env: Gymnasium id, for evaluation and, when the schedule has an RL phase, for interaction.
        offline_ratio: fraction of each RL batch drawn from the dataset; ``None`` samples the union
            uniformly; default 0.5 with a dataset (RLPD), ``None`` for offline-to-online.
        utd_ratio: RL updates per online transition.
        warmup_steps: random-action transitions before the first RL update (default 5,000 when the
            RL phase starts at step 0, else 0).
        save_buffer: write the online replay buffer there as a dataset when training completes.
        validation: held-out demonstrations; at every evaluation (``eval_every``, and at the end) the
            algorithm's imitation loss on ``validation_batches`` batches of it is logged as ``valid_<loss>``.
        save_best: keep the checkpoint of the best evaluation so far in ``RUN_DIR/best``, judged by
            ``"validation"`` (lowest validation loss), ``"success"`` (highest success rate) or ``"return"``.
        video_episodes: at every evaluation, write this many rollout episodes as a video to
            ``RUN_DIR/videos/step_N.mp4`` (``.gif`` without imageio-ffmpeg).
        goal_keys: the policy is goal-conditioned on these observation keys (``offrl.data.goals.with_goals``
            added ``goal_<key>`` to the data): evaluation environments add the task's goal the same way.
        lr_schedule: ``"constant"``, or every optimizer's learning rate decayed ``"linear"``-ly or along a
            ``"cosine"`` to ``lr_end_factor`` times its initial value at the last step.
        precision: ``"fp32"``, or ``"bf16"``: each gradient step's matrix products in bfloat16 (mixed
            precision; parameters, optimizer states, losses and output layers stay float32; see
            ``offrl.nn.precision``). Acting and evaluation stay float32.
        init_from: a run directory or checkpoint whose weights and optimizer states start this run.
        resume: continue the run in ``run_dir`` from its last checkpoint. Offline runs resume
            exactly; with an online phase the environments are reset, so episodes in progress are
            cut off (the replay buffer, weights, optimizers and RNGs are restored).
    """
    _check_arguments(algo, dataset, env)
    schedule = make_schedule(
        algo,
        dataset=dataset,
        env=env,
        steps=steps,
        online_steps=online_steps,
        rl_train_after_update_steps=rl_train_after_update_steps,
        rl_train_every_update_steps=rl_train_every_update_steps,
        offline_ratio=offline_ratio,
        utd_ratio=utd_ratio,
        warmup_steps=warmup_steps,
        num_envs=num_envs,
        buffer_size=buffer_size,
    )
    total = schedule.total_steps
    _check_counts(log_every=log_every, eval_every=eval_every, eval_episodes=eval_episodes, eval_envs=eval_envs,
                  checkpoint_every=checkpoint_every, keep_checkpoints=keep_checkpoints, num_envs=num_envs,
                  buffer_size=buffer_size, warmup_steps=warmup_steps)
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(algo.name, dataset)
    checkpoint_dir = run_dir / ckpt.CHECKPOINT_DIR
    checkpoint_every = checkpoint_every or eval_every or 10_000
    if dataset is not None:
        check_spaces(algo, dataset)
    own_buffer = False
    if save_buffer is not None:
        save_buffer = Path(save_buffer)
        if not schedule.has_online_phase:
            raise OffrlError("save_buffer records online interaction, and this run has no online phase")
        # a resumed run may replace the buffer file it wrote itself when it ended before; nothing else
        own_buffer = resume and _recorded_save_buffer(run_dir) == str(save_buffer)
        if save_buffer.exists() and not own_buffer:
            raise OffrlError(f"{save_buffer} already exists: refusing to overwrite it (give another save_buffer path)")
        _check_writable_directory(save_buffer.parent, f"save_buffer {save_buffer}")

    eval_vector = None
    if env is not None:
        if video_episodes > 0:
            check_video(env)
        eval_vector = make_vector_env(
            env, evaluation_slots(eval_envs, eval_episodes), goal_keys=goal_keys, render_first=video_episodes > 0
        )
        check_env_compatible(eval_vector, algo.observation_space, algo.action_space, env, f"the {algo.name} policy")
        if dataset is not None:
            check_actions(dataset.source, dataset.actions, eval_vector.single_action_space)

    validation_sampler = None
    if validation is not None:
        if not callable(getattr(algo, "loss", None)):
            raise OffrlError(f"{algo.name} has no imitation loss to validate with: validation is for the imitation algorithms")
        check_spaces(algo, validation)
    mixed_precision = update_context(precision, algo.device)
    if lr_schedule not in LR_SCHEDULES:
        raise OffrlError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, not {lr_schedule!r}")
    if save_best not in (None, "validation", "success", "return"):
        raise OffrlError(f"save_best must be 'validation', 'success' or 'return', not {save_best!r}")
    if save_best == "validation" and validation is None:
        raise OffrlError("save_best='validation' needs validation data (a validation filter key)")
    if save_best in ("success", "return") and env is None:
        raise OffrlError(f"save_best={save_best!r} is judged by rollouts: it needs an evaluation environment")
    if goal_keys and schedule.has_online_phase:
        raise OffrlError("goal-conditioned training (goal_keys) is offline: the goals come from the demonstrations' ends")
    if algo.batch_kind == "sequences" and schedule.has_online_phase:
        raise OffrlError(f"{algo.name} trains on episode windows of a dataset: it has no online or hybrid mode")
    offline_sampler, data_info, fingerprint, behaviour_return = None, {"reward_scale": 1.0}, None, None
    if dataset is not None:
        offline_sampler, data_info = make_offline_sampler(algo, dataset, seed=seed)
        fingerprint = dataset.fingerprint()
        behaviour_return = float(dataset.episode_returns().mean())
    if validation is not None:
        validation_sampler = make_offline_sampler(algo, validation, seed=seed, fit=False)[0]
    if init_from is not None and not resume:
        init_scale = _initialize_from(algo, init_from)
        if dataset is None and init_scale is not None:
            data_info["reward_scale"] = init_scale
    reward_scale = float(data_info["reward_scale"])

    buffer = collector = None
    if schedule.has_online_phase:
        frames, keys = algo.frame_stacking()
        buffer = ReplayBuffer(
            algo.observation_space, algo.action_space, schedule.buffer_size, device=algo.device, seed=seed + 1,
            frame_stack=frames, stack_keys=keys,
        )
    sampler = MixedSampler(
        offline_sampler,
        buffer,
        algo.config.batch_size,
        offline_ratio=schedule.offline_ratio,
        online_reward_scale=reward_scale,
    )
    metrics = MetricAccumulator()
    counters = {"env_steps": 0, "offline_updates": 0, "rl_updates": 0}

    def save(step: int, pending: bool) -> None:
        counts, sums = metrics.state()
        tensors = {**sums}
        if offline_sampler is not None:
            tensors["sampler"] = offline_sampler.get_state()
        if buffer is not None:
            with atomic_path(checkpoint_dir / REPLAY_BUFFER_FILE) as tmp:
                safetensors.torch.save_file({k: v.contiguous().cpu() for k, v in buffer.state_dict().items()}, str(tmp))
        ckpt.save_checkpoint(
            checkpoint_dir,
            algo,
            step=step,
            trainer_state={"pending_eval": pending, "metric_counts": counts, "dataset_fingerprint": fingerprint, **counters},
            trainer_tensors=tensors,
            keep=keep_checkpoints,
        )

    if resume:
        start_step, pending_eval, restored = _resume(algo, fingerprint, dataset, run_dir, offline_sampler, metrics)
        counters.update({k: int(restored.get(k, 0)) for k in counters})
        if buffer is not None and (checkpoint_dir / REPLAY_BUFFER_FILE).is_file():
            buffer.load_state_dict(safetensors.torch.load_file(str(checkpoint_dir / REPLAY_BUFFER_FILE), device=str(algo.device)))
            _end_open_episodes(buffer)
        algo.total_updates = max(algo.total_updates, total)
        _record_schedule(run_dir, schedule, save_buffer)  # a run extended and then interrupted resumes to its new total
    else:
        if ckpt.list_checkpoints(checkpoint_dir) or (run_dir / CONFIG).exists():
            raise CheckpointError(
                f"{run_dir} already holds a run: resume it (offrl train --resume {run_dir}) or choose another --run-dir"
            )
        others = [name for name in RUN_OUTPUTS if (run_dir / name).exists()]
        if others:
            raise CheckpointError(f"{run_dir} already holds {', '.join(others)} (not a run offrl can resume): choose another --run-dir")
        _check_writable_directory(run_dir, "the run directory")
        _seed_everything(seed)
        algo.total_updates = total
        start_step, pending_eval = 0, False
        write_json(
            run_dir / CONFIG,
            {
                "offrl_version": offrl.__version__,
                "mode": schedule.mode,
                "algo": algo.name,
                "algo_config": config_to_dict(algo.config),
                "observation_space": space_to_json(algo.observation_space),
                "action_space": space_to_json(algo.action_space),
                "env": env,
                "dataset": None
                if dataset is None
                else {
                    "source": dataset.source,
                    "fingerprint": fingerprint,
                    "transitions": len(dataset),
                    "episodes": dataset.num_episodes,
                    "behaviour_return": behaviour_return,
                },
                "reward_scale": reward_scale,
                "schedule": schedule.to_json(),
                "train": {
                    "steps": steps,
                    "online_steps": online_steps,
                    "eval_every": eval_every,
                    "eval_episodes": eval_episodes,
                    "eval_envs": eval_envs,
                    "seed": seed,
                    "log_every": log_every,
                    "checkpoint_every": checkpoint_every,
                    "keep_checkpoints": keep_checkpoints,
                    "device": str(algo.device),
                    "save_buffer": None if save_buffer is None else str(save_buffer),
                    "init_from": None if init_from is None else str(init_from),
                    "validation": None if validation is None else {"source": validation.source, "episodes": validation.num_episodes},
                    "save_best": save_best,
                    "goal_keys": list(goal_keys),
                    "video_episodes": video_episodes,
                    "lr_schedule": lr_schedule,
                    "lr_end_factor": lr_end_factor,
                    "precision": precision,
                    "buffer_size": buffer_size,
                },
                **(run_info or {}),
            },
        )
        save(0, pending=False)  # a run that dies before its first checkpoint can still be resumed

    if schedule.has_online_phase:
        collector = Collector(env, schedule.num_envs, buffer, seed=eval_seed(seed + 7, start_step))
    logger = MetricsLogger(run_dir, resume_step=start_step if resume else None, tensorboard=tensorboard)
    greedy = algo.rollout_policy(eval_vector.num_envs if eval_vector is not None else 1, deterministic=True)
    explore = algo.rollout_policy(schedule.num_envs, deterministic=False)
    metadata = dataset.metadata if dataset is not None else {}

    def run_eval(step: int, stop) -> EvalResult | None:
        algo.train(False)
        try:
            result = evaluate(
                greedy,
                eval_vector,
                env_id=env,
                episodes=eval_episodes,
                seed=eval_seed(seed, step),
                metadata=metadata,
                should_stop=lambda: stop.requested,
                video=run_dir / "videos" / f"step_{step:09d}{video_suffix()}" if video_episodes > 0 else None,
                video_episodes=video_episodes,
            )
        finally:
            algo.train(True)
        return result

    def run_validation(step: int) -> dict[str, float]:
        """Mean imitation loss over ``validation_batches`` batches of the held-out data (drawn the same way at a step)."""
        validation_sampler.generator.manual_seed(eval_seed(seed + 3, step))
        totals: dict[str, float] = {}
        algo.train(False)
        # a loss that samples (a VAE's latents) draws from torch's generator: validation must not move it, or
        # logging a held-out loss would change training and a resumed run would not repeat an uninterrupted one
        devices = [algo.device] if algo.device.type == "cuda" else []
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=devices):
                for _ in range(validation_batches):
                    loss, metrics = algo.loss(validation_sampler.sample())
                    for key, value in {"loss": loss, **metrics}.items():  # the total, and its parts
                        totals[key] = totals.get(key, 0.0) + float(value)
        finally:
            algo.train(True)
        return {f"valid_{key}": total / validation_batches for key, total in totals.items()}

    best = {"score": None}

    def evaluation_point(step: int, stop) -> EvalResult | None | bool:
        """Validation and rollouts at ``step``, logged as one row; the best checkpoint kept. ``False`` when
        interrupted, ``None`` when there are no rollouts."""
        row = run_validation(step) if validation_sampler is not None else {}
        result = None
        if eval_vector is not None:
            result = run_eval(step, stop)
            if result is None:
                return False
            row.update({"mean_return": result.mean_return, "std_return": result.std_return, "episodes": result.episodes})
            if result.normalized_score is not None:
                row["normalized_score"] = result.normalized_score
            if result.success_rate is not None:
                row["success_rate"] = result.success_rate
            if schedule.has_online_phase:
                row["env_steps"] = counters["env_steps"]
        if row:
            logger.log_eval(step, row)
        if save_best is not None:
            keep_if_best(step, row)
        return result

    def keep_if_best(step: int, row: dict[str, float]) -> None:
        key = {"validation": "valid_loss", "success": "success_rate", "return": "mean_return"}[save_best]
        if key not in row:
            raise OffrlError(f"save_best={save_best!r}: the evaluation at step {step} has no {key} ({env} reports no success?)")
        score = -row[key] if save_best == "validation" else row[key]
        previous = best_score(run_dir) if best["score"] is None else best["score"]
        if previous is not None and score <= previous:
            best["score"] = previous
            return
        best["score"] = score
        ckpt.save_checkpoint(run_dir / BEST_DIR, algo, step=step, keep=1)
        write_json(run_dir / BEST_DIR / "best.json", {"step": step, "criterion": save_best, key: row[key], "score": score})

    def collect_for_rl_update() -> None:
        """Step the environments until the buffer holds enough transitions for the next RL update."""
        while counters["env_steps"] < schedule.warmup_steps:
            counters["env_steps"] += collector.step(None)
        needed = schedule.warmup_steps + (counters["rl_updates"] + 1) / schedule.utd_ratio
        if counters["env_steps"] < needed:
            algo.train(False)
            while counters["env_steps"] < needed:
                counters["env_steps"] += collector.step(explore)
            algo.train(True)

    keep_freed_memory()  # freed activations stay in the heap for the next step (offrl.train.memory)
    enlist(algo, seed)  # no-op unless this thread trains one seed of a batched group
    step, last_eval, interrupted, saved_final = start_step, None, False, False
    display = TrainingProgress(total=total, start=step, enabled=progress, label=f"{algo.name} ({schedule.mode})")
    interval_start, interval_step = time.perf_counter(), step
    try:
        with stop_on_interrupt() as stop, display:
            if pending_eval and (eval_vector is not None or validation_sampler is not None):
                outcome = evaluation_point(step, stop)
                interrupted = saved_final = outcome is False
                last_eval = outcome or None
            while step < total and not interrupted:
                if stop.requested:
                    interrupted = True
                    break
                if lr_schedule != "constant":
                    set_learning_rates(algo, learning_rate_factor(lr_schedule, step, total, lr_end_factor))
                if schedule.is_rl_step(step):
                    collect_for_rl_update()
                    update, batch, counter = algo.update, sampler.sample(), "rl_updates"
                else:
                    update, batch, counter = algo.update_offline, offline_sampler.sample(), "offline_updates"
                with mixed_precision():
                    metrics.add(update(batch))
                counters[counter] += 1
                step += 1
                if step % log_every == 0 or step == total:
                    elapsed = time.perf_counter() - interval_start
                    speed = (step - interval_step) / elapsed if elapsed > 0 else 0.0
                    row = {**metrics.means(), "steps_per_sec": speed}
                    if collector is not None:
                        row["env_steps"] = counters["env_steps"]
                        returns = collector.pop_returns()
                        if returns:
                            row["train_return"] = float(np.mean(returns))
                    logger.log_train(step, row)
                    _stop_if_diverged([k for k, v in row.items() if not math.isfinite(v)], step, checkpoint_dir)
                    metrics.reset()
                    interval_start, interval_step = time.perf_counter(), step
                    display.update(step, speed)
                elif step % 50 == 0:
                    display.update(step)
                paused = time.perf_counter()  # evaluation and checkpoint time is not training speed
                evaluating_now = (eval_every and step % eval_every == 0) or step == total
                if evaluating_now and (eval_vector is not None or validation_sampler is not None):
                    outcome = evaluation_point(step, stop)
                    if outcome is False:
                        save(step, pending=True)
                        interrupted = saved_final = True
                        break
                    if outcome is not None:
                        last_eval = outcome
                        display.evaluation(step, _eval_text(last_eval))
                if step % checkpoint_every == 0 and step < total:
                    _stop_if_diverged(metrics.non_finite(), step, checkpoint_dir)  # never a checkpoint of NaN weights
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
        if eval_vector is not None:
            eval_vector.close()
        if collector is not None:
            collector.close()

    if not interrupted:
        if save_buffer is not None and buffer is not None and len(buffer) > 0:
            recorded = buffer.to_dataset(source=str(save_buffer))
            recorded.metadata.update({"env_id": env, "recorded_by": f"offrl {algo.name} ({schedule.mode})"})
            save_dataset(recorded, save_buffer, overwrite=own_buffer)
        if last_eval is not None:
            write_json(
                run_dir / FINAL_EVAL,
                {
                    **last_eval.to_json(),
                    "step": step,
                    "algo": algo.name,
                    "behaviour_return": behaviour_return,
                    "env_steps": counters["env_steps"],
                },
            )
    title = f"{algo.name} ({schedule.mode})" + (f" on {Path(dataset.source).name}" if dataset is not None else f" on {env}")
    curve = plot_run(run_dir, title=title, behaviour_return=behaviour_return)
    return TrainResult(
        run_dir=run_dir,
        step=step,
        interrupted=interrupted,
        final_eval=last_eval if not interrupted else None,
        behaviour_return=behaviour_return,
        learning_curve=curve,
        **counters,
    )


def _recorded_save_buffer(run_dir: Path) -> str | None:
    try:
        return read_run_config(run_dir).get("train", {}).get("save_buffer")
    except OffrlError:
        return None


def _check_arguments(algo: Any, dataset: Any, env: Any) -> None:
    """What goes where in ``train``: one error for a path where a dataset goes, or arguments swapped."""
    if not isinstance(algo, Algorithm):
        raise OffrlError(f"algo must be an algorithm (offrl.make_algo(...)), not {type(algo).__name__} {algo!r:.60}")
    if dataset is not None and not isinstance(dataset, Dataset):
        hint = " (load it with offrl.load_dataset(path))" if isinstance(dataset, (str, os.PathLike)) else ""
        raise OffrlError(f"dataset must be an offrl Dataset, not {type(dataset).__name__}{hint}")
    if env is not None and not isinstance(env, str):
        raise OffrlError(f"env must be a Gymnasium environment id (a string), not {type(env).__name__}")


def train_offline(algo: Algorithm, dataset: Dataset, *, steps: int = 1_000_000, **options: Any) -> TrainResult:
    """Offline training only: ``env``, when given, is used for evaluation and never for interaction."""
    return train(algo, dataset, steps=steps, rl_train_after_update_steps=steps, **options)


def train_online(algo: Algorithm, env: str, *, dataset: Dataset | None = None, **options: Any) -> TrainResult:
    """Training that interacts with ``env``: online without a dataset; hybrid with one (RLPD mixing,
    ALF's schedule flags); offline-to-online with ``online_steps``. Options are those of ``train``."""
    if not options.get("online_steps") and options.get("rl_train_after_update_steps") is None:
        options["rl_train_after_update_steps"] = 0
    return train(algo, dataset, env=env, **options)


def _eval_text(result: EvalResult) -> str:
    text = f"{result.mean_return:.1f} ± {result.std_return:.1f}"
    if result.normalized_score is not None:
        text += f" ({result.normalized_score:.1f} normalized)"
    if result.success_rate is not None:
        text += f", success {100 * result.success_rate:.0f}%"
    return text


def check_spaces(algo: Algorithm, dataset: Dataset) -> None:
    """One error line naming the file when ``dataset``'s observations or actions are not ``algo``'s."""
    algo_obs, data_obs = algo.observation_space, dataset.observation_space
    if getattr(algo_obs, "shape", None) != getattr(data_obs, "shape", None) or type(algo_obs) is not type(data_obs):
        raise OffrlError(f"{dataset.source}: observations {data_obs} do not match the algorithm's {algo_obs}")
    if type(algo.action_space) is not type(dataset.action_space) or algo.action_space.shape != dataset.action_space.shape:
        raise OffrlError(f"{dataset.source}: actions {dataset.action_space} do not match the algorithm's {algo.action_space}")


def _seed_everything(seed: int) -> None:
    with seeding_lock:  # not in the middle of another seed's make_algo (a seed group's threads)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)


def _initialize_from(algo: Algorithm, source: str | Path) -> float | None:
    """Load weights and optimizer states from a run or checkpoint; returns that run's reward scale."""
    meta, tensors = ckpt.read_checkpoint(source, device=algo.device)
    ckpt.restore_algo(algo, meta, tensors, source=str(source))
    algo.num_updates = 0
    config_path = Path(source) / CONFIG
    if config_path.is_file():
        return json.loads(config_path.read_text()).get("reward_scale")
    return None


def _end_open_episodes(buffer: ReplayBuffer) -> None:
    """After a resume the environments restart: the last stored step of each slot ends its episode."""
    size = len(buffer)
    env_ids = buffer.env_ids[:size]
    order = buffer.order[:size]
    for env_id in torch.unique(env_ids).tolist():
        rows = torch.nonzero(env_ids == env_id).squeeze(1)
        last = rows[order[rows].argmax()]
        if buffer.storage.terminals[last] < 0.5:
            buffer.storage.timeouts[last] = 1.0


# what a run directory holds besides config.json and checkpoints/: a fresh run into a directory with any of
# them would overwrite a user's files (or a seed group's record)
RUN_OUTPUTS = (TRAIN_CSV, EVAL_CSV, FINAL_EVAL, SEEDS_FILE, BEST_DIR)


def _stop_if_diverged(bad: list[str], step: int, checkpoint_dir: Path) -> None:
    if bad:
        raise TrainingDiverged(
            f"training diverged by step {step}: {', '.join(bad)} became NaN or infinite. The checkpoints in "
            f"{checkpoint_dir} are from before it; lower the learning rate, or check the scale of the data's rewards "
            "and observations"
        )


def _check_counts(**values: int | None) -> None:
    """Counts the trainer divides by or loops over: one error naming the option, before anything is written."""
    at_least_one = ("log_every", "eval_episodes", "eval_envs", "num_envs", "buffer_size", "keep_checkpoints")
    for name, value in values.items():
        if value is None:
            continue
        low = 1 if name in at_least_one else 0
        if not isinstance(value, (int, np.integer)) or value < low:
            raise OffrlError(f"{name} (--{name.replace('_', '-')}) must be an integer >= {low}, not {value!r}")


def _check_writable_directory(directory: Path, what: str) -> None:
    """Create ``directory`` (and its parents) and write a file there, or say in one line why it cannot be:
    checked before training, not found out when its results are written."""
    if directory.exists() and not directory.is_dir():
        raise OffrlError(f"{what}: {directory} is a file, not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise OffrlError(f"{what}: cannot write in {directory} ({error.strerror or error})") from None


def _record_schedule(run_dir: Path, schedule: Schedule, save_buffer: Path | None) -> None:
    """A resumed run's config.json holds the schedule it now follows (a new total, a larger replay buffer) and
    where its buffer is saved."""
    saved = read_run_config(run_dir)
    # the kind of run is the one it started as (a resume gives the schedule by its switch step, not by online_steps)
    now = {**schedule.to_json(), "mode": saved.get("schedule", {}).get("mode", schedule.mode)}
    train = dict(saved.get("train", {}))
    if save_buffer is not None:
        train["save_buffer"] = str(save_buffer)
    if saved.get("schedule") != now or saved.get("train", {}) != train:
        write_json(run_dir / CONFIG, {**saved, "schedule": now, "train": train})


def _resume(
    algo: Algorithm,
    fingerprint: str | None,
    dataset: Dataset | None,
    run_dir: Path,
    sampler: UniformSampler | SequenceSampler | None,
    metrics: MetricAccumulator,
) -> tuple[int, bool, dict[str, Any]]:
    saved = read_run_config(run_dir)
    if saved.get("algo") != algo.name:
        raise CheckpointError(f"{run_dir}: the run trained {saved.get('algo')!r}, not {algo.name!r}")
    current = config_to_dict(algo.config)
    if saved.get("algo_config") != current:
        changed = sorted(k for k in current if saved.get("algo_config", {}).get(k) != current[k])
        raise CheckpointError(f"{run_dir}: the algorithm config differs from the run's ({', '.join(changed)})")
    meta, tensors = ckpt.read_checkpoint(run_dir, device=algo.device)
    trainer = meta.get("trainer", {})
    saved_fingerprint = trainer.get("dataset_fingerprint")
    if saved_fingerprint is not None and saved_fingerprint != fingerprint:
        source = dataset.source if dataset is not None else "(none)"
        raise CheckpointError(f"{run_dir}: the dataset {source} is not the one this run was trained on (its content changed)")
    ckpt.restore_algo(algo, meta, tensors, source=str(run_dir))
    try:  # the generators' states, the sampler's and the metric sums: entries a hand edit may have broken
        ckpt.restore_rng(meta, tensors)
        extra = ckpt.trainer_tensors(tensors)
        if sampler is not None:
            sampler.set_state(extra["sampler"].cpu())
        metrics.load(trainer.get("metric_counts", {}), extra)
    except (KeyError, ValueError, TypeError, IndexError, RuntimeError) as error:
        raise CheckpointError(f"{run_dir}: the latest checkpoint's trainer state is damaged ({type(error).__name__}: {error})") from None
    return int(meta["step"]), bool(trainer.get("pending_eval", False)), trainer
