"""The robomimic-style workflow of the README, as a user runs it: scripted demonstrations in robomimic's
layout, a config template, epochs with a validation filter key, the best checkpoint kept, evaluation of it."""

from __future__ import annotations

import csv
import json

import h5py

from tests.e2e.test_cli import OFFRL, assert_user_error, offrl

TASK = "offrl/CueMemory-v0"


def test_demonstrations_template_train_validate_keep_best_evaluate(tmp_path):
    offrl("datasets", "collect", "--env", TASK, "--policy", "scripted", "--out", "demos.hdf5", "--format", "robomimic",
          "--episodes", "20", "--num-envs", "5", "--noise", "0.1", "--valid-fraction", "0.2", cwd=tmp_path)
    with h5py.File(tmp_path / "demos.hdf5") as handle:  # robomimic's own layout, masks included
        assert len([k for k in handle["data"] if k.startswith("demo_")]) == 20
        assert {"position", "cue"} == set(handle["data/demo_0/obs"])
        assert sorted(handle["mask"]) == ["train", "valid"] and len(handle["mask/valid"]) == 4
        assert json.loads(handle["data"].attrs["env_args"])["env_name"] == TASK
    info = offrl("datasets", "info", "demos.hdf5", cwd=tmp_path).stdout
    assert "robomimic" in info and "train (16 demos), valid (4 demos)" in info and "cue" in info

    template = json.loads(offrl("config", "template", "bc_rnn", cwd=tmp_path).stdout)
    template["algo_config"].update(rnn_hidden_dim=16, rnn_num_layers=1, seq_length=5, batch_size=8)
    template["train"].update(eval_episodes=4, eval_envs=2)
    (tmp_path / "bc_rnn.json").write_text(json.dumps(template))
    offrl("train", "--config", "bc_rnn.json", "--dataset", "demos.hdf5", "--env", TASK, "--run-dir", "run", "--epochs", "3",
          "--steps-per-epoch", "10", "--filter-key", "train", "--validation-key", "valid", "--save-best", "validation",
          "--lr-schedule", "linear", "--lr-end-factor", "0.1", "--video-episodes", "1", "--no-progress", cwd=tmp_path)
    run = tmp_path / "run"
    with open(run / "evaluations.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [10, 20, 30]  # one evaluation per epoch
    assert all(float(r["valid_bc_loss"]) > 0 and r["success_rate"] != "" for r in rows)
    best = json.loads((run / "best" / "best.json").read_text())
    losses = {int(r["step"]): float(r["valid_loss"]) for r in rows}
    assert all(float(r["valid_loss"]) == float(r["valid_bc_loss"]) for r in rows)  # bc_rnn: the total is its one loss
    assert best["step"] == min(losses, key=losses.get) and best["criterion"] == "validation"
    config = json.loads((run / "config.json").read_text())
    assert config["dataset"]["episodes"] == 16 and config["train"]["validation"]["episodes"] == 4
    assert config["algo_config"]["rnn_hidden_dim"] == 16 and config["schedule"]["total_steps"] == 30
    evaluated = json.loads(offrl("eval", str(run / "best"), "--episodes", "4", "--json", cwd=tmp_path).stdout)  # env: the run's
    assert evaluated["algo"] == "bc_rnn" and evaluated["step"] == best["step"] and evaluated["success_rate"] is not None
    videos = sorted(path.stem for path in (run / "videos").iterdir())
    assert videos == ["step_000000010", "step_000000020", "step_000000030"]  # one per evaluation
    offrl("eval", "run", "--episodes", "2", "--video", "rollout.gif", cwd=tmp_path)
    from PIL import Image

    with Image.open(tmp_path / "rollout.gif") as gif:
        assert gif.size == (128, 128) and gif.n_frames > 5


def test_workflow_errors_are_one_line(tmp_path):
    offrl("datasets", "collect", "--env", TASK, "--policy", "scripted", "--out", "demos.hdf5", "--format", "robomimic",
          "--episodes", "4", "--valid-fraction", "0.5", cwd=tmp_path)
    common = ["train", "--dataset", "demos.hdf5", "--steps", "4", "--no-progress"]
    assert_user_error(offrl(*common, "--algo", "bc", "--validation-key", "test", cwd=tmp_path, check=False),
                      "demos.hdf5", "no filter key 'test'", "train, valid")
    assert_user_error(offrl(*common, "--algo", "td3_bc", "--validation-key", "valid", cwd=tmp_path, check=False),
                      "td3_bc has no imitation loss")
    assert_user_error(offrl(*common, "--algo", "bc", "--save-best", "success", cwd=tmp_path, check=False),
                      "needs an evaluation environment")
    assert_user_error(offrl("datasets", "collect", "--env", "Pendulum-v1", "--policy", "scripted", "--out", "p.hdf5",
                            "--episodes", "1", cwd=tmp_path, check=False), "Pendulum-v1 has no scripted demonstrator")
    assert OFFRL.exists()


def test_goal_keys_train_evaluate_and_resume(tmp_path):
    offrl("datasets", "collect", "--env", TASK, "--policy", "scripted", "--out", "demos.hdf5", "--format", "robomimic",
          "--episodes", "40", "--num-envs", "5", "--noise", "0.1", cwd=tmp_path)
    offrl("train", "--algo", "bc", "--dataset", "demos.hdf5", "--env", TASK, "--goal-keys", "position", "--steps", "300",
          "--eval-every", "0", "--eval-episodes", "4", "--run-dir", "run", "--set", "hidden_dims=64,64", "--no-progress", cwd=tmp_path)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"]["goal_keys"] == ["position"] and "goal_position" in config["observation_space"]["spaces"]
    evaluated = json.loads(offrl("eval", "run", "--episodes", "4", "--json", cwd=tmp_path).stdout)  # the env gets its goal keys
    assert evaluated["episodes"] == 4 and evaluated["success_rate"] is not None
    offrl("train", "--resume", "run", "--steps", "320", "--no-progress", cwd=tmp_path)
    # collecting with the run's policy gives the environment the run's goal keys too
    collected = offrl("datasets", "collect", "--env", TASK, "--policy", "run", "--episodes", "2", "--out", "own.npz", cwd=tmp_path)
    assert "2 episodes" in collected.stdout
    assert "goal_position" in json.loads(offrl("datasets", "info", "own.npz", "--json", cwd=tmp_path).stdout)["observation_space"]["spaces"]
    assert_user_error(offrl("train", "--algo", "bc", "--env", "Pendulum-v1", "--goal-keys", "position", "--steps", "2",
                            "--dataset", "demos.hdf5", "--run-dir", "bad", cwd=tmp_path, check=False), "not keys of its observations")
