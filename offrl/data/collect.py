"""Roll out a policy in a Gymnasium environment and record a dataset, terminals and timeouts right."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from offrl.data.dataset import Dataset
from offrl.data.tree import tree_map
from offrl.errors import OffrlError
from offrl.spaces import as_float32
from offrl.train.evaluate import make_vector_env

PolicyFn = Callable[[Any], np.ndarray]


def collect(
    env_id: str,
    policy: PolicyFn,
    *,
    episodes: int | None = None,
    steps: int | None = None,
    num_envs: int = 1,
    seed: int = 0,
    noise: float = 0.0,
    epsilon: float = 0.0,
    metadata: dict[str, Any] | None = None,
) -> Dataset:
    """Record ``episodes`` complete episodes, or exactly ``steps`` transitions.

    ``noise`` adds Gaussian noise with that standard deviation (as a fraction
    of each action's half-range) to continuous actions; ``epsilon`` replaces
    an action by a uniformly random one with that probability. With
    ``steps``, the episode running when the count is reached is cut off and
    marked as a timeout.
    """
    if (episodes is None) == (steps is None):
        raise ValueError("give exactly one of episodes or steps")
    if not (noise >= 0.0 and 0.0 <= epsilon <= 1.0):
        raise OffrlError(f"noise must be >= 0 and epsilon in [0, 1] (got noise={noise}, epsilon={epsilon})")
    envs = make_vector_env(env_id, num_envs, goal_keys=getattr(policy, "goal_keys", ()))
    action_space = envs.single_action_space
    if noise > 0 and not isinstance(action_space, gym.spaces.Box):
        envs.close()
        raise OffrlError(f"noise perturbs continuous actions; {env_id} has {action_space}: use epsilon for random actions")
    rng = np.random.default_rng(seed)
    action_space.seed(seed)
    buffers: list[list[tuple]] = [[] for _ in range(num_envs)]
    finished: list[list[tuple]] = []
    finished_steps = 0
    observations, _ = envs.reset(seed=[seed + i for i in range(num_envs)])
    start_episode = getattr(policy, "start_episode", None)  # a RolloutPolicy with per-episode state
    if start_episode is not None:
        start_episode(None)

    def enough() -> bool:
        if episodes is not None:
            return len(finished) >= episodes
        return finished_steps + sum(len(b) for b in buffers) >= steps

    while not enough():
        actions = np.asarray(policy(observations))
        actions = _perturb(actions, action_space, rng, noise, epsilon)
        next_observations, rewards, terminated, truncated, infos = envs.step(actions)
        for i in range(num_envs):
            done = terminated[i] or truncated[i]
            final = _row(infos["final_obs"][i]) if done else _row(next_observations, i)
            buffers[i].append((_row(observations, i), actions[i], rewards[i], final, terminated[i], truncated[i] and not terminated[i]))
            if done:
                finished.append(buffers[i])
                finished_steps += len(buffers[i])
                buffers[i] = []
        if start_episode is not None and (terminated | truncated).any():
            start_episode(np.flatnonzero(terminated | truncated))
        observations = next_observations
    envs.close()

    if episodes is not None:
        rows = [t for episode in finished[:episodes] for t in episode]
    else:
        partial = [b for b in buffers if b]
        for episode in partial:
            obs, act, rew, nxt, term, _ = episode[-1]
            episode[-1] = (obs, act, rew, nxt, term, not term)  # cut off by the end of the recording
        rows = [t for episode in finished + partial for t in episode][:steps]
        last = rows[-1]
        rows[-1] = (*last[:5], not last[4])
    observation_space = as_float32(envs.single_observation_space)
    return Dataset(
        observations=_stack([r[0] for r in rows]),
        actions=np.stack([r[1] for r in rows]),
        rewards=np.asarray([r[2] for r in rows], dtype=np.float32),
        next_observations=_stack([r[3] for r in rows]),
        terminals=np.asarray([r[4] for r in rows], dtype=bool),
        timeouts=np.asarray([r[5] for r in rows], dtype=bool),
        observation_space=observation_space,
        action_space=action_space,
        metadata={"env_id": env_id, "collect_seed": seed, "noise": noise, "epsilon": epsilon, **(metadata or {})},
        source=f"<collected from {env_id}>",
    )


def _perturb(actions: np.ndarray, space: gym.Space, rng: np.random.Generator, noise: float, epsilon: float) -> np.ndarray:
    if isinstance(space, gym.spaces.Box):
        actions = actions.astype(np.float32).reshape(len(actions), *space.shape)
        if noise > 0:
            actions = actions + rng.normal(0.0, noise, actions.shape) * (space.high - space.low) / 2
        if epsilon > 0:
            random = rng.uniform(space.low, space.high, actions.shape)
            replace = rng.random(len(actions)) < epsilon
            actions[replace] = random[replace]
        return np.clip(actions, space.low, space.high).astype(np.float32)
    actions = actions.astype(np.int64).reshape(len(actions))
    if epsilon > 0:
        replace = rng.random(len(actions)) < epsilon
        actions[replace] = rng.integers(space.start, space.start + space.n, int(replace.sum()))
    return actions


def _row(observations: Any, index: int | None = None) -> Any:
    if index is None:
        return observations
    return tree_map(lambda a: a[index], observations) if isinstance(observations, dict) else observations[index]


def _stack(rows: list[Any]) -> Any:
    if isinstance(rows[0], dict):
        return {key: _stack([r[key] for r in rows]) for key in rows[0]}
    return np.stack(rows)



def controller_policy(spec: str, env_id: str, *, stochastic: bool = False, seed: int = 0, num_envs: int = 1) -> PolicyFn:
    """A policy for ``collect`` from a command-line spec.

    ``random``: uniformly random actions. ``scripted``: the demonstrator of one of offrl's own
    tasks (``offrl.zoo.tasks``), for ``num_envs`` environments. A run directory or checkpoint: its
    policy (the deterministic action, or a sample with ``stochastic``).
    ``module:function`` or ``file.py:function``: a controller called with a
    batch of observations; one that only takes a single observation is
    called row by row.
    """
    from pathlib import Path

    from offrl.plugins import resolve_callable
    from offrl.train.evaluate import make_env

    if spec == "random":
        space = _action_space(env_id)
        space.seed(seed)
        return lambda observations: np.stack([space.sample() for _ in range(len(_first_leaf(observations)))])
    if spec == "scripted":
        from offrl.zoo.tasks import demonstrator

        try:
            return demonstrator(env_id, num_envs, seed=seed)
        except KeyError as error:
            raise OffrlError(error.args[0]) from None
    if Path(spec).exists():
        from offrl.data.goals import GoalObservation
        from offrl.policy import load_policy
        from offrl.train.evaluate import check_env_compatible
        from offrl.train.run import run_settings

        policy = load_policy(spec)
        goal_keys = run_settings(spec).get("train", {}).get("goal_keys", [])
        probe = GoalObservation(make_env(env_id), goal_keys) if goal_keys else make_env(env_id)
        try:
            check_env_compatible(probe, policy.observation_space, policy.action_space, env_id, f"the policy in {spec}")
        finally:
            probe.close()

        def act(observations: Any) -> np.ndarray:
            return policy(observations, deterministic=not stochastic)

        act.goal_keys = tuple(goal_keys)  # collect adds the task's goal to the observations, as the run trained on it
        return act
    controller = resolve_callable(spec)
    action_space = _action_space(env_id)
    shape = tuple(action_space.shape) if isinstance(action_space, gym.spaces.Box) else ()
    width = int(np.prod(shape))

    def batched(observations: Any) -> np.ndarray:
        n = len(_first_leaf(observations))
        try:
            actions = np.asarray(controller(observations))
        except Exception:  # noqa: BLE001 - a controller of one observation may fail on a batch: called row by row below
            actions = np.zeros(())
        # a batch's actions: one per observation (for a batch of one action of several numbers, also of the action's rank)
        if actions.ndim >= 1 and len(actions) == n and actions.size == n * width and (n > 1 or width == 1 or actions.ndim == 1 + len(shape)):
            return actions.reshape(n, *shape)
        rows = [np.asarray(controller(_row(observations, i))) for i in range(n)]  # a controller of one observation
        wrong = next((row.shape for row in rows if row.size != width), None)
        if wrong is not None:
            raise OffrlError(
                f"{spec} returned actions of shape {actions.shape} for {n} observation(s) and {wrong} for one; "
                f"{env_id}'s action space is {action_space}"
            )
        return np.stack([row.reshape(shape) for row in rows])

    return batched


def _action_space(env_id: str) -> gym.Space:
    from offrl.train.evaluate import make_env

    probe = make_env(env_id)
    space = probe.action_space
    probe.close()
    return space


def _first_leaf(observations: Any) -> np.ndarray:
    return next(iter(observations.values())) if isinstance(observations, dict) else observations
