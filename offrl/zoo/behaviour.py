"""Train the zoo's behaviour policies with offrl's SAC, and export the small actor snapshots that ship.

    python -m offrl.zoo.behaviour train Hopper-v5 --steps 300000 --work /tmp/zoo/hopper
    python -m offrl.zoo.behaviour export /tmp/zoo/hopper --out offrl/zoo/policies/hopper

``train`` runs online SAC and keeps a checkpoint every ``steps / snapshots``
updates. ``export`` evaluates every snapshot, picks the expert (the best)
and the medium policy (the first whose return reaches a third of the
expert's, as D4RL's medium), and writes the actors of the expert, the
medium policy and every snapshot up to the medium one (the policies whose
data filled the replay buffer, for medium-replay) as float16 safetensors,
with a manifest of their returns and the reference returns.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import safetensors.torch
import torch

from offrl.algos.registry import make_algo
from offrl.io import atomic_path, write_json
from offrl.train.checkpoint import list_checkpoints, load_algo
from offrl.train.evaluate import evaluate, make_vector_env, torch_policy
from offrl.train.trainer import train_online

SAC_CONFIG = {"hidden_dims": (256, 256)}
WARMUP_STEPS = 5_000
REFERENCE_EPISODES = 50
SELECTION_EPISODES = 10


def train_behaviour(env_id: str, *, steps: int, work: Path, snapshots: int = 30, seed: int = 0) -> Path:
    env = gym.make(env_id)
    algo = make_algo("sac", env.observation_space, env.action_space, seed=seed, **SAC_CONFIG)
    start = time.perf_counter()
    run_dir = work / "run"
    log = work / "training.json"
    before = json.loads(log.read_text()) if log.is_file() else {"seconds": 0.0}  # earlier, resumed parts
    result = train_online(
        algo,
        env_id,
        steps=steps,
        warmup_steps=WARMUP_STEPS,
        eval_every=max(steps // snapshots, 1),
        eval_episodes=10,
        keep_checkpoints=0,
        seed=seed,
        run_dir=run_dir,
        resume=(run_dir / "config.json").is_file(),
    )
    seconds = before["seconds"] + time.perf_counter() - start
    write_json(log, {"env_id": env_id, "steps": result.step, "seconds": seconds, "threads": torch.get_num_threads()})
    return run_dir


def export_policies(work: Path, out: Path, *, episodes: int = REFERENCE_EPISODES, seed: int = 10_000) -> dict:
    run_dir = work / "run"
    config = json.loads((run_dir / "config.json").read_text())
    env_id = config["env"]
    stems = list_checkpoints(run_dir / "checkpoints")
    vector = make_vector_env(env_id, 10)

    def sampled_return(algo, count: int) -> float:
        policy = torch_policy(lambda obs: algo.act(obs, deterministic=False), algo.device)
        return evaluate(policy, vector, env_id=env_id, episodes=count, seed=seed).mean_return

    snapshots = []
    for stem in stems:
        algo = load_algo(stem.with_suffix(".json"), optimizers=False)
        algo.train(False)
        step = json.loads(stem.with_suffix(".json").read_text())["step"]
        snapshots.append({"stem": stem, "step": step, "return": sampled_return(algo, SELECTION_EPISODES), "algo": algo})
        print(f"snapshot at update {step:>7}: return {snapshots[-1]['return']:9.1f} (stochastic, {SELECTION_EPISODES} episodes)")
    expert = max(snapshots, key=lambda s: s["return"])
    random_init = snapshots[0]
    threshold = random_init["return"] + (expert["return"] - random_init["return"]) / 3
    medium = next(s for s in snapshots if s["return"] >= threshold and s["step"] > 0)
    replay = [s for s in snapshots if s["step"] < medium["step"]]  # the policies that acted before medium
    for snap in {id(s): s for s in (expert, medium, random_init)}.values():
        snap["return"] = sampled_return(snap["algo"], episodes)

    vector.single_action_space.seed(seed)
    uniform_returns = evaluate(
        lambda obs: np.stack([vector.single_action_space.sample() for _ in range(len(obs))]),
        vector,
        env_id=env_id,
        episodes=episodes,
        seed=seed,
    )
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for label, snap in [("expert", expert), ("medium", medium)] + [(f"replay_{i:02d}", s) for i, s in enumerate(replay)]:
        _write_actor(snap["algo"], out / f"{label}.safetensors")
        files[label] = {"update_step": snap["step"], "return": snap["return"]}
    training = json.loads((work / "training.json").read_text()) if (work / "training.json").is_file() else {}
    # the online run's environment steps at each snapshot: warmup plus one transition per update
    manifest = {
        "env_id": env_id,
        "algo": "sac",
        "sac_config": config["algo_config"],
        "observation_space": config["observation_space"],
        "action_space": config["action_space"],
        "policies": files,
        "medium_env_steps": WARMUP_STEPS + medium["step"],
        "warmup_env_steps": WARMUP_STEPS,
        "reference": {
            "random": uniform_returns.mean_return,
            "expert": expert["return"],
            "episodes": episodes,
            "note": "random: uniform random actions; expert: the expert policy, sampled as in its dataset",
        },
        "training": training,
    }
    write_json(out / "manifest.json", manifest)
    vector.close()
    return manifest


def _write_actor(algo, path: Path) -> None:
    tensors = {f"actor/{k}": v.to(torch.float16) for k, v in algo.actor.state_dict().items()}
    tensors.update({f"encoder/{k}": v.float() for k, v in algo.encoder.state_dict().items()})
    with atomic_path(path) as tmp:
        safetensors.torch.save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    train_parser = sub.add_parser("train")
    train_parser.add_argument("env_id")
    train_parser.add_argument("--steps", type=int, required=True)
    train_parser.add_argument("--work", type=Path, required=True)
    train_parser.add_argument("--snapshots", type=int, default=30)
    train_parser.add_argument("--seed", type=int, default=0)
    export_parser = sub.add_parser("export")
    export_parser.add_argument("work", type=Path)
    export_parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "train":
        train_behaviour(args.env_id, steps=args.steps, work=args.work, snapshots=args.snapshots, seed=args.seed)
    else:
        print(json.dumps(export_policies(args.work, args.out)["reference"], indent=2))


if __name__ == "__main__":
    _main()
