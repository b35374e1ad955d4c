"""The imitation algorithms on offrl's scripted-demonstration tasks, each where it must beat plain BC.

``offrl/ObstacleReach-v0``: demonstrations pass an obstacle on the left or on the
right at random; their average runs into it. ``offrl/CueMemory-v0``: the goal is
cued on the first step only and the demonstrator turns towards it three steps
later, so the turn needs memory. Demonstrations are recorded with a little
action noise (as human ones have), which also gives the data states off the
ideal path and the demonstrator's corrections from them. Settings are small
networks and fast learning rates so that each run takes seconds; each was
checked to clear its bound with room to spare.
"""

from __future__ import annotations

import pytest
import torch

import offrl
from offrl.data.collect import collect
from offrl.zoo.tasks import demonstrator

OBSTACLE, MEMORY = "offrl/ObstacleReach-v0", "offrl/CueMemory-v0"
FAST = {"lr": 1e-3, "batch_size": 32}
RNN = {**FAST, "rnn_hidden_dim": 64, "rnn_num_layers": 1}
SETTINGS = {  # name: (task, steps, overrides)
    "bc_gmm": (OBSTACLE, 3000, {**FAST, "hidden_dims": (64, 64), "batch_size": 64}),
    "bc_vae": (OBSTACLE, 3000, {"lr": 1e-3, "vae_hidden_dims": (64, 64), "hidden_dims": (64, 64)}),
    "bc_rnn": (MEMORY, 3000, RNN),
    "bc_rnn_gmm": (MEMORY, 3000, RNN),
    "hbc": (MEMORY, 3000, {**RNN, "planner_hidden_dims": (64, 64), "planner_lr": 1e-3}),
    "iris": (OBSTACLE, 3000, {**RNN, "planner_hidden_dims": (64, 64), "planner_lr": 1e-3, "value_hidden_dims": (64, 64),
                              "num_proposals": 32}),
    "bc_transformer": (MEMORY, 1500, {**FAST, "embed_dim": 32, "num_layers": 2, "num_heads": 2, "dropout": 0.0,
                                       "supervise_all_steps": True}),
}


def test_every_imitation_algorithm_has_a_learning_test():
    imitation = {cls.name for cls in offrl.list_algos() if cls.paper.startswith("Mandlekar")}
    assert imitation == set(SETTINGS)


@pytest.fixture(scope="module")
def demonstrations():
    return {task: collect(task, demonstrator(task, 10, seed=0), episodes=100, num_envs=10, seed=0, noise=0.1) for task in (OBSTACLE, MEMORY)}


@pytest.fixture(scope="module")
def trained(demonstrations, tmp_path_factory):
    """``trained(name, task)``: the policy trained on the task's demonstrations and its success rate, trained once per module."""
    cache: dict[tuple[str, str], tuple] = {}

    def train(name: str, task: str):
        if (name, task) not in cache:
            steps, overrides = (2000, {"hidden_dims": (64, 64)}) if name == "bc" else SETTINGS[name][1:]
            data = demonstrations[task]
            algo = offrl.make_algo(name, data.observation_space, data.action_space, seed=0, **overrides)
            result = offrl.train_offline(
                algo, data, env=task, steps=steps, eval_every=0, eval_episodes=20, run_dir=tmp_path_factory.mktemp(name),
                progress=False, tensorboard=False,
            )
            assert result.final_eval.success_rate is not None and result.final_eval.episodes == 20
            algo.train(False)
            cache[name, task] = algo, result.final_eval.success_rate
        return cache[name, task]

    return train


def test_scripted_demonstrators_succeed(demonstrations):
    for task, dataset in demonstrations.items():
        assert dataset.num_episodes == 100 and dataset.episode_returns().min() == 1.0, task  # every demonstration succeeds


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_imitation_beats_behaviour_cloning_where_it_must(name, trained):
    task = SETTINGS[name][0]
    success, bc_success = trained(name, task)[1], trained("bc", task)[1]
    assert success >= 0.9, success
    assert success >= bc_success + 0.25, (success, bc_success)


def test_gmm_keeps_both_modes_where_bc_averages_them(trained):
    """At the start both sides were demonstrated equally: BC's action is their average, straight at the obstacle;
    the mixture's most likely mode points to one side, and its samples go both ways."""
    bc, gmm = trained("bc", OBSTACLE)[0], trained("bc_gmm", OBSTACLE)[0]
    start = torch.tensor([[0.0, -0.8]])
    assert abs(float(bc.act({"position": start})[0, 0])) < 0.4  # the sideways components cancel
    assert abs(float(gmm.act({"position": start})[0, 0])) > 0.8
    torch.manual_seed(0)
    sides = gmm.act({"position": start.repeat(400, 1)}, deterministic=False)[:, 0].numpy()
    assert 0.25 < (sides > 0).mean() < 0.75, (sides > 0).mean()


def test_goal_conditioned_bc_needs_no_memory(demonstrations, trained, tmp_path):
    """Conditioned on where each demonstration ended (robomimic's goal_mode=last), memoryless BC reaches the
    cued goal: in rollouts the task supplies its goal as the same observation key."""
    from offrl.data.goals import with_goals

    data = with_goals(demonstrations[MEMORY], ["position"])
    algo = offrl.make_algo("bc", data.observation_space, data.action_space, seed=0, hidden_dims=(64, 64))
    result = offrl.train_offline(algo, data, env=MEMORY, steps=2000, eval_every=0, eval_episodes=20, run_dir=tmp_path,
                                 progress=False, tensorboard=False, goal_keys=["position"])
    assert result.final_eval.success_rate >= 0.9
    assert result.final_eval.success_rate >= trained("bc", MEMORY)[1] + 0.25


def test_stacked_low_dimensional_frames_carry_the_cue(demonstrations, trained, tmp_path):
    """robomimic's frame_stack on low-dimensional keys: with the last 5 observations memoryless BC sees the cue when it
    turns (three or four steps after it), stacked at sampling time and by the rollout policy alike."""
    data = demonstrations[MEMORY]
    algo = offrl.make_algo("bc", data.observation_space, data.action_space, seed=0, hidden_dims=(64, 64), frame_stack=5)
    result = offrl.train_offline(algo, data, env=MEMORY, steps=2000, eval_every=0, eval_episodes=20, run_dir=tmp_path,
                                 progress=False, tensorboard=False)
    assert algo.encoder.out_dim == 5 * 3  # position and cue, five frames
    assert result.final_eval.success_rate >= 0.9
    assert result.final_eval.success_rate >= trained("bc", MEMORY)[1] + 0.25
