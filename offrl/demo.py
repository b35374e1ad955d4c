"""The `make demo` job: a Pendulum dataset from a noisy scripted controller, TD3+BC on it, evaluation.

Nothing is downloaded. The dataset is rebuilt deterministically from the
seed, so running the demo twice trains on the same data.
"""

from __future__ import annotations

import time
from pathlib import Path

from offrl.algos.registry import make_algo
from offrl.data.collect import collect
from offrl.data.formats import load_dataset, save_dataset
from offrl.train.trainer import train_offline
from offrl.zoo.pendulum import energy_pump

ENV_ID = "Pendulum-v1"
# Gaussian noise of 0.8 x the torque half-range, and a random torque 20% of the time:
# the behaviour scores about -490, where the noise-free controller scores about -145.
NOISE, EPSILON = 0.8, 0.2


def run_demo(*, out: Path, steps: int, episodes: int, seed: int) -> int:
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    dataset_path = out / f"pendulum-scripted-{episodes}ep-seed{seed}.hdf5"
    if dataset_path.exists():
        print(f"dataset: reusing {dataset_path}")
    else:
        print(f"dataset: {episodes} episodes of {ENV_ID} from a noisy scripted controller -> {dataset_path}")
        dataset = collect(
            ENV_ID,
            energy_pump,
            episodes=episodes,
            num_envs=10,
            seed=seed,
            noise=NOISE,
            epsilon=EPSILON,
            metadata={"policy": "offrl.zoo.pendulum:energy_pump"},
        )
        save_dataset(dataset, dataset_path)
    dataset = load_dataset(dataset_path)

    run_dir = out / "runs" / f"td3_bc-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"training: TD3+BC for {steps:,} gradient steps -> {run_dir}")
    algo = make_algo("td3_bc", dataset.observation_space, dataset.action_space, seed=seed)
    result = train_offline(
        algo,
        dataset,
        env=ENV_ID,
        steps=steps,
        eval_every=max(steps // 5, 1),
        eval_episodes=20,
        seed=seed,
        run_dir=run_dir,
    )
    minutes = (time.perf_counter() - start) / 60
    if result.final_eval is None:
        print(f"stopped at step {result.step}; resume with: offrl train --resume {run_dir}")
        return 130
    final = result.final_eval
    print()
    print(f"policy return (TD3+BC, {final.episodes} episodes): {final.mean_return:8.1f} ± {final.std_return:.1f}")
    print(f"dataset behaviour return ({dataset.num_episodes} episodes): {result.behaviour_return:8.1f}")
    print(f"learning curve: {result.learning_curve}")
    print(f"demo took {minutes:.1f} minutes")
    return 0
