"""A scripted Pendulum-v1 controller: energy pumping to swing up, PD control to balance.

Pendulum-v1's dynamics are ``theta'' = 15 sin(theta) + 3 u`` (g=10, m=l=1,
theta=0 upright), so ``E = theta'^2 / 2 + 15 cos(theta)`` changes at
``dE/dt = 3 u theta'``: pushing along the velocity while ``E < 15`` pumps
the pendulum up to the upright energy, and a PD law holds it there.

``python -m offrl.zoo.pendulum --measure`` measures the controller's return
and a uniformly random policy's (500 episodes each: -145.13 and -1209.01 here).
"""

from __future__ import annotations

import argparse

import numpy as np

UPRIGHT_ENERGY = 15.0
MAX_TORQUE = 2.0


def energy_pump(observations: np.ndarray) -> np.ndarray:
    """Batch of observations ``[B, 3]`` (cos, sin, velocity) -> torques ``[B, 1]``."""
    observations = np.asarray(observations, dtype=np.float64).reshape(-1, 3)
    cos, sin, velocity = observations[:, 0], observations[:, 1], observations[:, 2]
    theta = np.arctan2(sin, cos)
    energy = 0.5 * velocity**2 + UPRIGHT_ENERGY * cos
    direction = np.where(np.abs(velocity) < 1e-3, 1.0, np.sign(velocity))
    pump = np.where(energy < UPRIGHT_ENERGY, MAX_TORQUE * direction, -0.5 * direction)
    balance = -(10.0 * theta + 2.0 * velocity)
    torque = np.where(cos > 0.85, balance, pump)
    return np.clip(torque, -MAX_TORQUE, MAX_TORQUE)[:, None].astype(np.float32)


def random_policy(observations: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    rng = rng or np.random.default_rng()
    return rng.uniform(-MAX_TORQUE, MAX_TORQUE, size=(len(np.atleast_2d(observations)), 1)).astype(np.float32)


def _measure(episodes: int) -> None:
    from offrl.data.collect import collect

    rng = np.random.default_rng(0)
    for name, policy in (("random", lambda obs: random_policy(obs, rng)), ("scripted", energy_pump)):
        dataset = collect("Pendulum-v1", policy, episodes=episodes, num_envs=10, seed=12345)
        returns = dataset.episode_returns()
        print(f"{name:9s} mean return {returns.mean():9.2f}  std {returns.std():7.2f}  over {len(returns)} episodes")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--measure", action="store_true", help="measure random and scripted returns")
    parser.add_argument("--episodes", type=int, default=500)
    args = parser.parse_args()
    if args.measure:
        _measure(args.episodes)
