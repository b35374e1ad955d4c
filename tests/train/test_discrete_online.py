"""Discrete algorithms through the online, hybrid and offline-to-online trainers, on CartPole and MinAtar."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import offrl
from offrl.spaces import as_float32
from offrl.train.trainer import train

Q_LEARNING = {"lr": 1e-3, "batch_size": 64, "hidden_dims": (64, 64), "target_update_interval": 200}
RANDOM_CARTPOLE = 22.0  # mean return of uniformly random actions


def test_online_double_dqn_learns_cartpole(tmp_path):
    env = gym.make("CartPole-v1")
    algo = offrl.make_algo(
        "double_dqn", as_float32(env.observation_space), env.action_space, seed=0, exploration_steps=3000, **Q_LEARNING
    )
    result = offrl.train_online(
        algo, "CartPole-v1", steps=4000, warmup_steps=1000, eval_every=0, eval_episodes=5, run_dir=tmp_path, progress=False, tensorboard=False
    )
    assert result.env_steps >= 5000
    assert result.final_eval.mean_return > RANDOM_CARTPOLE + 75, result.final_eval.mean_return


@pytest.mark.parametrize(("name", "mode"), [("qr_dqn", "hybrid"), ("discrete_cql", "offline-to-online")])
def test_discrete_hybrid_and_offline_to_online(name, mode, cartpole_dataset, tmp_path):
    ds = cartpole_dataset
    overrides = {**Q_LEARNING, "quantiles": 16} if name == "qr_dqn" else Q_LEARNING
    algo = offrl.make_algo(name, ds.observation_space, ds.action_space, seed=0, **overrides)
    options = {"online_steps": 300} if mode == "offline-to-online" else {}
    result = train(
        algo, ds, env="CartPole-v1", steps=300, warmup_steps=100, eval_every=0, eval_episodes=2,
        run_dir=tmp_path, progress=False, tensorboard=False, **options,
    )
    assert result.env_steps >= 300 and result.final_eval is not None
    metrics = (tmp_path / "metrics.csv").read_text()
    assert "td_loss" in metrics and "env_steps" in metrics


def test_online_dqn_on_minatar_images(tmp_path):
    pytest.importorskip("minatar")
    from offrl.train.evaluate import make_env

    env = make_env("MinAtar/Breakout-v1")
    space = as_float32(env.observation_space)
    assert space.dtype == np.uint8 and space.shape == (10, 10, 4)  # boolean channels stored as 0/1 bytes
    algo = offrl.make_algo("dqn", space, env.action_space, seed=0, encoder_features=32, batch_size=16)
    assert type(algo.q.trunk).__name__ == "ResNetCNN"
    result = offrl.train_online(
        algo, "MinAtar/Breakout-v1", steps=60, warmup_steps=50, eval_every=0, eval_episodes=2, eval_envs=2,
        run_dir=tmp_path, progress=False, tensorboard=False,
    )
    assert result.final_eval.episodes == 2 and result.step == 60


def test_frame_stacking_online_and_hybrid_stack_in_the_replay_buffer(tmp_path):
    pytest.importorskip("minatar")
    from offrl.data.collect import collect

    space = gym.spaces.Box(0, 1, (10, 10, 4), np.uint8)
    algo = offrl.make_algo("dqn", space, gym.spaces.Discrete(3), seed=0, frame_stack=3, encoder_features=32, batch_size=16)
    assert algo.q.trunk.convs[0].in_channels == 12  # 3 frames of 4 channels
    seen = []
    update = algo.update
    algo.update = lambda batch: seen.append(batch.observations.shape) or update(batch)
    result = offrl.train_online(
        algo, "MinAtar/Breakout-v1", steps=40, warmup_steps=30, num_envs=2, eval_every=0, eval_episodes=2, eval_envs=2,
        run_dir=tmp_path / "online", progress=False, tensorboard=False,
    )
    assert result.step == 40 and result.final_eval.episodes == 2
    assert set(seen) == {(16, 3, 10, 10, 4)}  # stacked from the buffer's single frames

    dataset = collect("MinAtar/Breakout-v1", algo.rollout_policy(2, deterministic=False), episodes=2, num_envs=2, seed=1)
    result = train(
        algo, dataset, env="MinAtar/Breakout-v1", steps=30, warmup_steps=20, eval_every=0, eval_episodes=2, eval_envs=2,
        run_dir=tmp_path / "hybrid", progress=False, tensorboard=False,
    )
    assert result.env_steps >= 20 and seen[-1] == (16, 3, 10, 10, 4)
