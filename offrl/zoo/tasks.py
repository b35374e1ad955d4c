"""Small continuous-control tasks of offrl's own, with scripted demonstrators, for imitation learning.

Each task is a point on a plane moved by velocity actions in [-1, 1]^2, with
dict observations as robomimic records them (low-dimensional keys, and with
``images=True`` a rendered top-down ``agentview_image``, uint8 channels-last),
``info["is_success"]`` on every step, and a demonstrator whose behaviour makes
one imitation method work where a simpler one cannot:

- ``offrl/ObstacleReach-v0``: reach the goal past a disc obstacle; each
  demonstration passes it on the left or on the right at random, so the
  demonstrations are bimodal and their average runs into the obstacle (a Gaussian-mixture policy keeps the
  modes, deterministic BC does not).
- ``offrl/CueMemory-v0``: a cue shown only on the first step says which of two
  goals to reach; the demonstrator first moves straight ahead, identically
  for both cues, and only then turns: the turn needs the remembered cue
  (a recurrent policy has it, a memoryless one does not).

Reaching the goal gives reward 1 and ends the episode with success; hitting
the obstacle or the wrong goal ends it without.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from offrl.rollout import RolloutPolicy

IMAGE_SIZE = 32
SPEED = 0.15  # distance moved per step at full action


class PointTask(gym.Env):
    """The shared plane: state ``position``, velocity actions, an optional rendered image."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    goal_radius = 0.25

    def __init__(self, *, images: bool = False, render_mode: str | None = None) -> None:
        self.images = images
        self.render_mode = render_mode
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        spaces = {key: gym.spaces.Box(-2.0, 2.0, (size,), np.float32) for key, size in self.low_dim_keys().items()}
        if images:
            spaces["agentview_image"] = gym.spaces.Box(0, 255, (IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
        self.observation_space = gym.spaces.Dict(spaces)
        self.position = np.zeros(2, np.float32)

    def low_dim_keys(self) -> dict[str, int]:
        return {"position": 2}

    def observe(self) -> dict[str, np.ndarray]:
        observation = {"position": self.position.copy()}
        if self.images:
            observation["agentview_image"] = self.render_image()
        return observation

    def move(self, action: np.ndarray) -> None:
        self.position = np.clip(self.position + SPEED * np.clip(action, -1.0, 1.0), -2.0, 2.0).astype(np.float32)

    def render(self) -> np.ndarray:
        return self.render_image(128)

    def render_image(self, size: int = IMAGE_SIZE) -> np.ndarray:
        """Top-down view of [-1.5, 1.5]^2: white floor, the task's discs, the agent in blue."""
        coords = np.linspace(-1.5, 1.5, size, dtype=np.float32)
        x, y = np.meshgrid(coords, coords[::-1])
        image = np.full((size, size, 3), 255, np.uint8)
        for center, radius, color in [*self.discs(), (self.position, 0.1, (40, 60, 220))]:
            inside = (x - center[0]) ** 2 + (y - center[1]) ** 2 <= radius**2
            image[inside] = color
        return image

    def discs(self) -> list[tuple[np.ndarray, float, tuple[int, int, int]]]:
        raise NotImplementedError


class ObstacleReach(PointTask):
    """From near (0, -0.8) to the goal at (0, 1); a disc of radius 0.4 at the origin is in the way."""

    goal = np.array([0.0, 1.0], np.float32)
    obstacle, obstacle_radius = np.zeros(2, np.float32), 0.4

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.position = (np.array([0.0, -0.8]) + self.np_random.uniform(-0.01, 0.01, 2)).astype(np.float32)
        return self.observe(), {"is_success": False}

    def step(self, action):
        self.move(np.asarray(action, np.float32))
        success = bool(np.linalg.norm(self.position - self.goal) < self.goal_radius)
        crashed = bool(np.linalg.norm(self.position - self.obstacle) < self.obstacle_radius)
        return self.observe(), float(success), success or crashed, False, {"is_success": success}

    def goal_observation(self) -> dict[str, np.ndarray]:
        """What the task's goal looks like, for goal-conditioned policies (``offrl.data.goals``)."""
        return {"position": self.goal.copy()}

    def discs(self):
        return [(self.obstacle, self.obstacle_radius, (220, 40, 40)), (self.goal, self.goal_radius, (40, 180, 60))]


class CueMemory(PointTask):
    """From the origin to one of two goals, (-1, 1) or (1, 1); ``cue`` (-1 or 1, only on the first step) says which."""

    goals = np.array([[-1.0, 1.0], [1.0, 1.0]], np.float32)

    def low_dim_keys(self) -> dict[str, int]:
        return {"position": 2, "cue": 1}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.target = int(self.np_random.integers(2))
        self.position = self.np_random.uniform(-0.03, 0.03, 2).astype(np.float32)
        self.first = True
        return self.observe(), {"is_success": False}

    def observe(self) -> dict[str, np.ndarray]:
        observation = super().observe()
        observation["cue"] = np.array([2.0 * self.target - 1.0 if self.first else 0.0], np.float32)
        return observation

    def step(self, action):
        self.first = False
        self.move(np.asarray(action, np.float32))
        distances = np.linalg.norm(self.goals - self.position, axis=1)
        success = bool(distances[self.target] < self.goal_radius)
        wrong = bool(distances[1 - self.target] < self.goal_radius)
        return self.observe(), float(success), success or wrong, False, {"is_success": success}

    def goal_observation(self) -> dict[str, np.ndarray]:
        """The cued goal: a goal-conditioned policy needs no memory of the cue."""
        return {"position": self.goals[self.target].copy(), "cue": np.zeros(1, np.float32)}

    def discs(self):
        return [(goal, self.goal_radius, (40, 180, 60)) for goal in self.goals]


def toward(positions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Full-speed velocity actions from ``positions`` to ``targets`` (``[n, 2]``), slowing to land on them."""
    delta = targets - positions
    return np.clip(delta / SPEED, -1.0, 1.0).astype(np.float32)


class ObstacleReachDemonstrator(RolloutPolicy):
    """Diagonally forward to beside the obstacle, left or right at random per episode, up past it, to the
    goal. The two modes split at the start; their average heads straight into the obstacle."""

    def __init__(self, num_envs: int, *, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.sides = np.ones(num_envs)
        self.phase = np.zeros(num_envs, dtype=np.int64)

    def start_episode(self, env_indices: np.ndarray | None = None) -> None:
        rows = np.arange(len(self.sides)) if env_indices is None else np.asarray(env_indices)
        self.sides[rows] = self.rng.choice([-1.0, 1.0], size=len(rows))
        self.phase[rows] = 0

    def waypoints(self) -> np.ndarray:
        """``[n, 3, 2]``: beside the obstacle, past it, the goal."""
        x = 0.75 * self.sides
        zeros = np.zeros_like(x)
        return np.stack([
            np.stack([x, zeros - 0.05], axis=1),
            np.stack([x, zeros + 0.4], axis=1),
            np.broadcast_to(ObstacleReach.goal, (len(x), 2)),
        ], axis=1)

    def __call__(self, observations: dict[str, np.ndarray]) -> np.ndarray:
        positions = np.asarray(observations["position"])
        waypoints = self.waypoints()
        rows = np.arange(len(positions))
        arrived = np.linalg.norm(waypoints[rows, self.phase] - positions, axis=1) < 0.05
        self.phase = np.minimum(self.phase + arrived, 2)
        return toward(positions, waypoints[rows, self.phase])


class CueMemoryDemonstrator(RolloutPolicy):
    """Straight ahead to y = 0.45 whatever the cue, then to the cued goal (remembered from the first step)."""

    def __init__(self, num_envs: int, *, seed: int = 0) -> None:
        self.targets = np.zeros(num_envs, dtype=np.int64)

    def __call__(self, observations: dict[str, np.ndarray]) -> np.ndarray:
        positions, cue = np.asarray(observations["position"]), np.asarray(observations["cue"])[:, 0]
        self.targets = np.where(cue != 0, (cue > 0).astype(np.int64), self.targets)
        ahead = np.stack([np.zeros(len(positions)), np.full(len(positions), 0.5)], axis=1)
        targets = np.where((positions[:, 1] < 0.45)[:, None], ahead, CueMemory.goals[self.targets])
        return toward(positions, targets)


DEMONSTRATORS: dict[str, type[RolloutPolicy]] = {
    "offrl/ObstacleReach-v0": ObstacleReachDemonstrator,
    "offrl/ObstacleReach-Image-v0": ObstacleReachDemonstrator,
    "offrl/CueMemory-v0": CueMemoryDemonstrator,
}


def demonstrator(env_id: str, num_envs: int, *, seed: int = 0) -> RolloutPolicy:
    """The scripted demonstrator of an offrl task."""
    if env_id not in DEMONSTRATORS:
        raise KeyError(f"{env_id} has no scripted demonstrator: offrl's are {', '.join(DEMONSTRATORS)}")
    return DEMONSTRATORS[env_id](num_envs, seed=seed)


def register() -> None:
    """Register the tasks with Gymnasium (done by ``make_env`` for ``offrl/`` ids)."""
    if "offrl/ObstacleReach-v0" in gym.registry:
        return
    gym.register("offrl/ObstacleReach-v0", entry_point=ObstacleReach, max_episode_steps=40)
    gym.register("offrl/ObstacleReach-Image-v0", entry_point=ObstacleReach, max_episode_steps=40, kwargs={"images": True})
    gym.register("offrl/CueMemory-v0", entry_point=CueMemory, max_episode_steps=25)
