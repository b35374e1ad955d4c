"""Roll out a policy in a vector of Gymnasium environments and summarize the returns."""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from offrl.errors import OffrlError
from offrl.rollout import to_tensor
from offrl.zoo.scores import normalized_score, reference_returns

PolicyFn = Callable[[Any], np.ndarray]


@dataclasses.dataclass
class EvalResult:
    env_id: str
    episodes: int
    mean_return: float
    std_return: float
    returns: list[float]
    lengths: list[int]
    normalized_score: float | None = None  # 100 * (R - random) / (expert - random), when references are known
    normalized_std: float | None = None
    reference: str | None = None  # where the reference returns come from
    success_rate: float | None = None  # fraction of episodes whose last step reported info["is_success"], when the task reports it

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Environment families registered by their own packages on import: id prefix -> (module, pip extra)
EXTRA_ENVS = {"MinAtar/": ("minatar.gym", "minatar"), "ALE/": ("ale_py", "atari"), "offrl/": ("offrl.zoo.tasks", None)}


def register_extra_envs(env_id: str) -> None:
    """Import the package that registers ``env_id``'s family (MinAtar, Atari), once."""
    for prefix, (module, extra) in EXTRA_ENVS.items():
        if not env_id.startswith(prefix) or env_id in gym.registry:
            continue
        try:
            package = importlib.import_module(module)
        except ImportError:
            raise OffrlError(f"environment {env_id!r} needs the {module.split('.')[0]} package: pip install 'offrl[{extra}]'") from None
        if hasattr(package, "register_envs"):  # MinAtar registers on request
            package.register_envs()
        elif hasattr(package, "register"):  # offrl's own tasks
            package.register()
        else:
            gym.register_envs(package)


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    register_extra_envs(env_id)
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.Error as error:
        raise OffrlError(f"cannot create environment {env_id!r}: {error}") from None


def evaluation_slots(envs: int, episodes: int) -> int:
    """Vector-env slots for ``episodes`` evaluation episodes with at most ``envs`` slots: none idle, at least one."""
    return max(1, min(envs, episodes))


def make_vector_env(env_id: str, num_envs: int, *, goal_keys: Sequence[str] = (), render_first: bool = False) -> gym.vector.VectorEnv:
    """``num_envs`` copies of ``env_id``; with ``goal_keys``, each adds the task's goal as ``goal_<key>`` observations;
    with ``render_first``, the first renders RGB frames (for rollout videos)."""
    from offrl.data.goals import GoalObservation

    def wrap(env: gym.Env) -> gym.Env:
        return GoalObservation(env, goal_keys) if goal_keys else env

    wrap(make_env(env_id)).close()  # clear errors (an unknown id, a task without goals) before the vector env hides them

    def make(render: bool) -> gym.Env:
        return wrap(gym.make(env_id, render_mode="rgb_array") if render else gym.make(env_id))

    makers = [functools.partial(make, render_first and slot == 0) for slot in range(num_envs)]
    return gym.vector.SyncVectorEnv(makers, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def check_env_compatible(env: gym.Env | gym.vector.VectorEnv, observation_space: gym.Space, action_space: gym.Space, env_id: str, source: str) -> None:
    """The environment must produce the observations, and take the actions, the policy was trained on."""
    env_obs = getattr(env, "single_observation_space", env.observation_space)
    env_act = getattr(env, "single_action_space", env.action_space)
    if _shape(env_obs) != _shape(observation_space):
        raise OffrlError(
            f"environment {env_id} has observations of shape {_shape(env_obs)}, but {source} has {_shape(observation_space)}"
        )
    if type(env_act) is not type(action_space) or _shape(env_act) != _shape(action_space):
        raise OffrlError(f"environment {env_id} has action space {env_act}, but {source} has {action_space}")


def _shape(space: gym.Space) -> Any:
    if isinstance(space, gym.spaces.Dict):
        return {k: _shape(v) for k, v in space.spaces.items()}
    if isinstance(space, gym.spaces.Discrete):
        return ("discrete", int(space.n))
    return tuple(space.shape)


def evaluate(
    policy: PolicyFn,
    envs: gym.vector.VectorEnv,
    *,
    env_id: str,
    episodes: int,
    seed: int,
    metadata: dict[str, Any] | None = None,
    should_stop: Callable[[], bool] | None = None,
    video: Path | None = None,
    video_episodes: int = 1,
) -> EvalResult | None:
    """Run exactly ``episodes`` episodes, split evenly over the vector's slots (no bias to short episodes).

    ``policy`` is a callable, optionally with ``start_episode(indices)`` and
    ``observe(rewards)`` (a ``RolloutPolicy`` with state). Returns ``None``
    when ``should_stop`` asks to abort. With ``video``, the first
    ``video_episodes`` episodes of the first slot (made with
    ``render_first=True``) are written there (``.mp4`` or ``.gif``, imageio).
    """
    frames: list[np.ndarray] | None = None
    num_envs = envs.num_envs
    quota = np.full(num_envs, episodes // num_envs) + (np.arange(num_envs) < episodes % num_envs)
    observations, _ = envs.reset(seed=[seed + i for i in range(num_envs)])
    if video is not None:  # the first slot's episodes (up to its share of the episodes)
        frames = [envs.envs[0].render()]
    start_episode = getattr(policy, "start_episode", None)
    observe = getattr(policy, "observe", None)
    if start_episode is not None:
        start_episode(None)
    running_return = np.zeros(num_envs)
    running_length = np.zeros(num_envs, dtype=np.int64)
    returns: list[float] = []
    lengths: list[int] = []
    successes: list[bool] = []
    done_count = np.zeros(num_envs, dtype=np.int64)
    action_space = envs.single_action_space
    while (done_count < quota).any():
        if should_stop is not None and should_stop():
            return None
        actions = policy(observations)
        if isinstance(action_space, gym.spaces.Box):
            actions = np.clip(actions, action_space.low, action_space.high)
        observations, rewards, terminated, truncated, infos = envs.step(actions)
        if frames is not None and done_count[0] < video_episodes:
            frames.append(envs.envs[0].render())
        if observe is not None:
            observe(rewards)
        running_return += rewards
        running_length += 1
        finished = np.flatnonzero(terminated | truncated)
        if start_episode is not None and len(finished):
            start_episode(finished)
        for index in finished:
            if done_count[index] < quota[index]:
                returns.append(float(running_return[index]))
                lengths.append(int(running_length[index]))
                done_count[index] += 1
                success = episode_success(infos, index)
                if success is not None:
                    successes.append(success)
            running_return[index] = 0.0
            running_length[index] = 0
    if frames:
        write_video(video, frames)
    result = summarize(env_id, returns, lengths, metadata)
    if successes and len(successes) == len(returns):
        result.success_rate = float(np.mean(successes))
    return result


def write_video(path: Path, frames: list[np.ndarray], fps: int = 20) -> None:
    """RGB frames as a video file (mp4 needs imageio-ffmpeg; gif only Pillow), written atomically."""
    try:
        import imageio.v2 as imageio
    except ImportError:
        raise OffrlError("rollout videos need imageio: pip install 'offrl[video]'") from None
    from offrl.io import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        options = {"fps": fps} if path.suffix == ".mp4" else {"duration": 1000 / fps, "loop": 0}
        imageio.mimwrite(tmp, [np.asarray(frame, dtype=np.uint8) for frame in frames], format=path.suffix[1:], **options)


def check_video(env_id: str, path: Path | None = None) -> None:
    """Before any rollout: the video can be encoded (imageio; imageio-ffmpeg for ``.mp4``) and ``env_id``
    renders RGB frames, so a missing package is one error up front, not a failure after the episodes."""
    if importlib.util.find_spec("imageio") is None:
        raise OffrlError("rollout videos need imageio: pip install 'offrl[video]'")
    if path is not None and path.suffix == ".mp4" and importlib.util.find_spec("imageio_ffmpeg") is None:
        raise OffrlError(f"{path}: an .mp4 video needs imageio-ffmpeg (pip install 'offrl[video]'), or write a .gif")
    env = make_env(env_id, render_mode="rgb_array")
    try:
        env.reset(seed=0)
        frame = env.render()
    except Exception as error:  # noqa: BLE001 - each renderer fails its own way (a missing pygame, no display, ...)
        raise OffrlError(f"{env_id} cannot render video frames: {type(error).__name__}: {error}") from None
    finally:
        env.close()
    if frame is None or np.ndim(frame) != 3:
        raise OffrlError(f"{env_id} renders no RGB frames (render_mode='rgb_array' gave {type(frame).__name__})")


def video_suffix() -> str:
    """``.mp4`` when imageio can encode it (imageio-ffmpeg), else ``.gif``."""
    return ".mp4" if importlib.util.find_spec("imageio_ffmpeg") is not None else ".gif"


def episode_success(infos: dict[str, Any], index: int) -> bool | None:
    """``is_success`` of the step that ended slot ``index``'s episode (a vector env that resets in the same
    step keeps it under ``final_info``), or None when the task does not report it."""
    final = infos.get("final_info", infos)
    if "is_success" not in final or not final.get("_is_success", np.ones(index + 1, bool))[index]:
        return None
    return bool(final["is_success"][index])


def summarize(env_id: str, returns: list[float], lengths: list[int], metadata: dict[str, Any] | None = None) -> EvalResult:
    values = np.asarray(returns, dtype=np.float64)
    result = EvalResult(
        env_id=env_id,
        episodes=len(returns),
        mean_return=float(values.mean()),
        std_return=float(values.std()),
        returns=[float(v) for v in values],
        lengths=list(lengths),
    )
    reference = reference_returns(env_id, metadata)
    if reference is not None:
        scores = np.asarray([normalized_score(v, reference) for v in values])
        result.normalized_score = float(scores.mean())
        result.normalized_std = float(scores.std())
        result.reference = reference.source
    return result


def torch_policy(act: Callable[[Any], torch.Tensor], device: torch.device) -> PolicyFn:
    """Wrap ``algo.act`` (tensors in, tensors out) as numpy in, numpy out."""

    def policy(observations: Any) -> np.ndarray:
        with torch.no_grad():
            return act(to_tensor(observations, device)).cpu().numpy()

    return policy
