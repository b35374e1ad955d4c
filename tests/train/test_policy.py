"""``offrl.load_policy``'s callable: one observation or a batch, with or without memory."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from offrl.algos import make_algo
from offrl.errors import OffrlError
from offrl.policy import Policy

OBSERVATIONS = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
ACTIONS = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)


@pytest.mark.parametrize(
    "name, options",
    [("td3_bc", {}), ("bc", {"frame_stack": 3}), ("bc_rnn", {"rnn_hidden_dim": 16, "seq_length": 5}),
     ("dt", {"context_length": 4, "embed_dim": 16, "num_layers": 1})],
)
def test_a_policy_takes_one_observation_then_a_batch_then_one_again(name, options):
    policy = Policy(make_algo(name, OBSERVATIONS, ACTIONS, seed=0, **options))
    rng = np.random.default_rng(0)
    one, batch = rng.normal(size=4).astype(np.float32), rng.normal(size=(5, 4)).astype(np.float32)
    for observations, shape in ((one, (2,)), (batch, (5, 2)), (batch[:3], (3, 2)), (one, (2,))):
        actions = policy(observations)
        assert actions.shape == shape
        assert np.all(np.abs(actions) <= 2.0)
    policy.start_episode(2)
    first = policy(batch[:2])
    policy.start_episode(2)  # a new episode from the same observations: the same actions (a policy's memory restarts)
    np.testing.assert_allclose(policy(batch[:2]), first)


def test_a_missing_observation_key_is_named():
    space = gym.spaces.Dict({"position": gym.spaces.Box(-2, 2, (2,), np.float32), "goal_position": gym.spaces.Box(-2, 2, (2,), np.float32)})
    policy = Policy(make_algo("bc", space, ACTIONS, seed=0))
    with pytest.raises(OffrlError, match="the observation has no goal_position.*GoalObservation"):
        policy({"position": np.zeros(2, np.float32)})


def test_videos_are_checked_before_any_rollout(monkeypatch, tmp_path):
    import importlib.util

    from offrl.train import evaluate

    class Blind(gym.Wrapper):
        def render(self):
            raise RuntimeError("no display")

    monkeypatch.setattr(evaluate, "make_env", lambda env_id, **kwargs: Blind(gym.make("CartPole-v1")))
    with pytest.raises(OffrlError, match="CartPole-v1 cannot render video frames: RuntimeError: no display"):
        evaluate.check_video("CartPole-v1")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "imageio_ffmpeg" else real(name, *a))
    with pytest.raises(OffrlError, match="an .mp4 video needs imageio-ffmpeg"):
        evaluate.check_video("CartPole-v1", tmp_path / "out.mp4")
