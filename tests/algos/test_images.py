"""Image and dict observations through every discrete algorithm: CNN trunks, frame stacking, augmentation."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from offrl.algos import list_algos, make_algo
from offrl.data import Dataset
from offrl.train.checkpoint import load_algo, save_checkpoint
from tests.algos.test_smoke import assert_valid_actions, build, train_steps

DISCRETE = [cls.name for cls in list_algos() if cls.action_type == "discrete"]
IMAGE_SMALL = {"encoder_features": 32, "hidden_dims": (), "batch_size": 16}


def image_dataset(n: int = 120, shape=(12, 12, 3), *, dict_observations: bool = False, episode_length: int = 20) -> Dataset:
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
    return Dataset(
        observations=observations,
        actions=rng.integers(0, 3, size=n),
        rewards=rng.normal(size=n).astype(np.float32),
        next_observations=next_observations,
        terminals=np.zeros(n, dtype=bool),
        timeouts=(np.arange(n) % episode_length) == episode_length - 1,
        observation_space=observation_space,
        action_space=gym.spaces.Discrete(3),
    )


@pytest.mark.parametrize("name", DISCRETE)
@pytest.mark.parametrize("layout", ["channels_last", "channels_first_stacked_shifted", "dict"])
def test_discrete_algorithms_train_and_act_on_images(name, layout, tmp_path):
    if layout == "channels_last":
        ds, extra = image_dataset(), {}
    elif layout == "channels_first_stacked_shifted":
        ds, extra = image_dataset(shape=(2, 12, 12)), {"frame_stack": 3, "image_shift": 2}
    else:
        ds, extra = image_dataset(dict_observations=True), {"frame_stack": 2}
    if name == "discrete_dt":  # its context is the history: one frame per step
        extra.pop("frame_stack", None)
    algo, sampler = build(name, ds, **IMAGE_SMALL, **extra, target_update_interval=2)
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


def test_continuous_algorithm_refuses_images_with_a_clear_message():
    ds = image_dataset()
    with pytest.raises(ValueError, match="td3_bc: observation space .* is not a vector: image observations need an image encoder"):
        make_algo("td3_bc", ds.observation_space, gym.spaces.Box(-1, 1, (2,), np.float32))
