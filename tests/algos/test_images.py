"""Image and dict observations through every algorithm: CNN trunks, frame stacking, augmentation."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from offrl.algos import get_algo_class, list_algos
from offrl.data import Dataset
from offrl.train.checkpoint import load_algo, save_checkpoint
from tests.algos.test_smoke import HIGH, LOW, assert_valid_actions, build, train_steps

ALGOS = [cls.name for cls in list_algos()]
IMAGE_SMALL = {"encoder_features": 32, "batch_size": 16, "vae_pretrain_steps": 1, "policy_freq": 1}


def image_dataset(
    n: int = 120, shape=(12, 12, 3), *, dict_observations: bool = False, episode_length: int = 20, continuous: bool = False
) -> Dataset:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    following = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    image_space = gym.spaces.Box(0, 255, shape, np.uint8)
    observation_space: gym.Space = image_space
    observations, next_observations = frames, following
    if dict_observations:
        vectors = rng.normal(size=(n, 3)).astype(np.float32)
        observations = {"camera": frames, "joints": vectors}
        next_observations = {"camera": following, "joints": vectors}
        observation_space = gym.spaces.Dict({"camera": image_space, "joints": gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)})
    if continuous:
        action_space: gym.Space = gym.spaces.Box(LOW, HIGH, dtype=np.float32)
        actions = rng.uniform(LOW, HIGH, size=(n, 2)).astype(np.float32)
    else:
        action_space, actions = gym.spaces.Discrete(3), rng.integers(0, 3, size=n)
    return Dataset(
        observations=observations,
        actions=actions,
        rewards=rng.normal(size=n).astype(np.float32),
        next_observations=next_observations,
        terminals=np.zeros(n, dtype=bool),
        timeouts=(np.arange(n) % episode_length) == episode_length - 1,
        observation_space=observation_space,
        action_space=action_space,
    )


@pytest.mark.parametrize("name", ALGOS)
@pytest.mark.parametrize("layout", ["channels_last", "channels_first_stacked_shifted", "dict"])
def test_every_algorithm_trains_and_acts_on_images(name, layout, tmp_path):
    if name in ("hbc", "iris") and layout != "dict":
        with pytest.raises(ValueError, match="HBC's subgoals are low-dimensional observations"):
            build(name, image_dataset(continuous=True), **IMAGE_SMALL)
        return  # its subgoals are low-dimensional keys: images ride along in dict observations
    continuous = get_algo_class(name).action_type == "continuous"
    if layout == "channels_last":
        ds, extra = image_dataset(continuous=continuous), {}
    elif layout == "channels_first_stacked_shifted":
        ds, extra = image_dataset(shape=(2, 12, 12), continuous=continuous), {"frame_stack": 3, "image_shift": 2}
    else:
        ds, extra = image_dataset(dict_observations=True, continuous=continuous), {"frame_stack": 2}
    if get_algo_class(name).batch_kind == "sequences":  # DT's context is the history: one frame per step
        extra.pop("frame_stack", None)
    hidden = {} if continuous else {"hidden_dims": ()}  # the discrete heads sit on the CNN directly
    algo, sampler = build(name, ds, **IMAGE_SMALL, **hidden, **extra, target_update_interval=2)
    assert any(isinstance(m, torch.nn.Conv2d) for m in algo.modules())
    before = {k: v.clone() for k, v in algo.state_dict().items()}
    for metrics in train_steps(algo, sampler, 3):
        assert all(np.isfinite(v) for v in metrics.values())
    conv_weights = [k for k in before if "convs.0.weight" in k and "target" not in k]
    assert conv_weights and any(not torch.equal(before[k], algo.state_dict()[k]) for k in conv_weights)

    # the rollout policy stacks frames itself: it takes what the environment gives, one frame per slot
    rollout = algo.rollout_policy(4, deterministic=True)
    rollout.start_episode(None)
    env_obs = {k: np.asarray(v[:4]) for k, v in ds.observations.items()} if layout == "dict" else np.asarray(ds.observations[:4])
    for _ in range(3):
        assert_valid_actions(torch.as_tensor(rollout(env_obs)), ds.action_space, 4)

    save_checkpoint(tmp_path, algo, step=3)
    loaded = load_algo(tmp_path)
    rows = torch.arange(8)
    observations = ds.to("cpu").index(rows).observations
    if "frame_stack" in extra:  # act takes stacked frames, as the sampler makes them
        observations = sampler.sample(8).observations
    loaded.train(False), algo.train(False)
    torch.testing.assert_close(loaded.act(observations), algo.act(observations))



def pointer_images(n: int, rng: np.random.Generator, size: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Channels-last images with one lit pixel; the target action points from the centre to it, in [-1, 1]^2."""
    rows, cols = rng.integers(0, size, n), rng.integers(0, size, n)
    images = np.zeros((n, size, size, 1), np.uint8)
    images[np.arange(n), rows, cols, 0] = 255
    targets = (np.stack([cols, rows], axis=1) - (size - 1) / 2) / ((size - 1) / 2)
    return images, targets.astype(np.float32)


def one_step_dataset(images: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> Dataset:
    n = len(images)
    return Dataset(
        observations=images,
        actions=actions,
        rewards=rewards.astype(np.float32),
        next_observations=images,
        terminals=np.ones(n, dtype=bool),
        timeouts=np.zeros(n, dtype=bool),
        observation_space=gym.spaces.Box(0, 255, images.shape[1:], np.uint8),
        action_space=gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
    )


def action_error(algo, images: np.ndarray, targets: np.ndarray) -> float:
    algo.train(False)
    actions = algo.act(torch.as_tensor(images)).numpy()
    return float(np.mean((actions - targets) ** 2))


def test_continuous_control_from_pixels_learns_through_the_cnn():
    """BC reads the target off the image through its CNN; TD3 with a critic-trained CNN and an actor on the detached
    features finds it from rewards alone (one-step episodes, reward -|a - target|^2, random data actions)."""
    rng = np.random.default_rng(0)
    images, targets = pointer_images(2000, rng)
    test_images, test_targets = pointer_images(200, rng)
    baseline = float(np.mean((test_targets - targets.mean(0)) ** 2))  # the best image-blind constant action

    torch.manual_seed(0)
    demos = one_step_dataset(images, np.clip(targets + rng.normal(0, 0.1, targets.shape), -1, 1).astype(np.float32), np.zeros(len(images)))
    bc, sampler = build("bc", demos, encoder_features=64, hidden_dims=(64,), batch_size=64, lr=1e-3)
    train_steps(bc, sampler, 400)
    assert action_error(bc, test_images, test_targets) < 0.1 * baseline

    torch.manual_seed(0)
    random_actions = rng.uniform(-1, 1, targets.shape).astype(np.float32)
    bandit = one_step_dataset(images, random_actions, -np.sum((random_actions - targets) ** 2, axis=1))
    td3, sampler = build("td3", bandit, encoder_features=64, hidden_dims=(64, 64), batch_size=64, policy_freq=1, actor_lr=1e-3, critic_lr=1e-3)
    train_steps(td3, sampler, 600)
    assert action_error(td3, test_images, test_targets) < 0.25 * baseline
