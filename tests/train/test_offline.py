from __future__ import annotations

import csv
import json
import os
import signal

import numpy as np
import pytest
import torch

import offrl
from offrl.errors import CheckpointError, DatasetError, OffrlError
from offrl.train import trainer
from tests.conftest import random_dataset

SETTINGS = dict(env="Pendulum-v1", steps=300, eval_every=100, eval_episodes=2, eval_envs=2, log_every=40, progress=False)


def read_rows(path, drop=("steps_per_sec",)):
    with open(path, newline="") as handle:
        return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(handle)]


def interrupt_after(algo, calls: int) -> None:
    """Send ourselves SIGINT (as Ctrl-C does) right after the given number of updates."""
    original = algo.update
    count = {"n": 0}

    def update(batch):
        metrics = original(batch)
        count["n"] += 1
        if count["n"] == calls:
            os.kill(os.getpid(), signal.SIGINT)
        return metrics

    algo.update = update


def fresh(name, ds):
    return offrl.make_algo(name, ds.observation_space, ds.action_space, seed=0, hidden_dims=(64, 64))


@pytest.mark.parametrize("name", ["bc", "td3_bc", "iql"])
def test_resume_after_ctrl_c_equals_an_uninterrupted_run(name, pendulum_dataset, tmp_path):
    ds = pendulum_dataset
    whole = fresh(name, ds)
    offrl.train_offline(whole, ds, run_dir=tmp_path / "whole", **SETTINGS)

    stopped = fresh(name, ds)
    interrupt_after(stopped, 130)  # inside a log interval (40) and between evaluations (100)
    result = offrl.train_offline(stopped, ds, run_dir=tmp_path / "cut", **SETTINGS)
    assert result.interrupted and result.step == 130
    assert json.loads((tmp_path / "cut/checkpoints/latest.json").read_text())["step"] == 130

    resumed = fresh(name, ds)
    result = offrl.train_offline(resumed, ds, run_dir=tmp_path / "cut", resume=True, **SETTINGS)
    assert not result.interrupted and result.step == 300
    assert read_rows(tmp_path / "cut/metrics.csv") == read_rows(tmp_path / "whole/metrics.csv")
    assert read_rows(tmp_path / "cut/evaluations.csv") == read_rows(tmp_path / "whole/evaluations.csv")
    for key, value in whole.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key


def test_ctrl_c_during_an_evaluation_repeats_it_on_resume(pendulum_dataset, tmp_path, monkeypatch):
    ds = pendulum_dataset
    whole = fresh("td3_bc", ds)
    offrl.train_offline(whole, ds, run_dir=tmp_path / "whole", **SETTINGS)

    real_evaluate = trainer.evaluate
    calls = {"n": 0}

    def evaluate_then_interrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the evaluation at step 200
            os.kill(os.getpid(), signal.SIGINT)
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(trainer, "evaluate", evaluate_then_interrupt)
    result = offrl.train_offline(fresh("td3_bc", ds), ds, run_dir=tmp_path / "cut", **SETTINGS)
    assert result.interrupted and result.step == 200
    assert [r["step"] for r in read_rows(tmp_path / "cut/evaluations.csv")] == ["100"]
    monkeypatch.setattr(trainer, "evaluate", real_evaluate)
    offrl.train_offline(fresh("td3_bc", ds), ds, run_dir=tmp_path / "cut", resume=True, **SETTINGS)
    assert read_rows(tmp_path / "cut/evaluations.csv") == read_rows(tmp_path / "whole/evaluations.csv")


def test_run_directory_contents(pendulum_dataset, tmp_path):
    result = offrl.train_offline(fresh("bc", pendulum_dataset), pendulum_dataset, run_dir=tmp_path / "run", **SETTINGS)
    run = tmp_path / "run"
    config = json.loads((run / "config.json").read_text())
    assert config["algo"] == "bc" and config["algo_config"]["hidden_dims"] == [64, 64]
    assert config["dataset"]["transitions"] == len(pendulum_dataset) and config["train"]["steps"] == 300
    final = json.loads((run / "final_eval.json").read_text())
    assert final["step"] == 300 and final["episodes"] == 2 and "normalized_score" in final
    assert final["mean_return"] == pytest.approx(result.final_eval.mean_return)
    assert (run / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any((run / "tensorboard").iterdir())
    assert [r["step"] for r in read_rows(run / "metrics.csv")] == ["40", "80", "120", "160", "200", "240", "280", "300"]
    checkpoints = sorted(p.name for p in (run / "checkpoints").glob("step_*.json"))
    assert checkpoints == ["step_000000100.json", "step_000000200.json", "step_000000300.json"]  # keep 3 (step 0 pruned)
    assert not list(run.rglob("*.tmp"))


def test_an_existing_run_is_never_overwritten(pendulum_dataset, tmp_path):
    offrl.train_offline(fresh("bc", pendulum_dataset), pendulum_dataset, run_dir=tmp_path / "run", **SETTINGS)
    before = (tmp_path / "run/metrics.csv").read_text()
    with pytest.raises(CheckpointError, match="already holds a run"):
        offrl.train_offline(fresh("bc", pendulum_dataset), pendulum_dataset, run_dir=tmp_path / "run", **SETTINGS)
    assert (tmp_path / "run/metrics.csv").read_text() == before


def test_resume_with_another_dataset_or_algorithm_is_refused(pendulum_dataset, tmp_path):
    offrl.train_offline(fresh("bc", pendulum_dataset), pendulum_dataset, run_dir=tmp_path / "run", **SETTINGS)
    other = pendulum_dataset.subset(range(10))
    with pytest.raises(CheckpointError, match="not the one this run was trained on"):
        offrl.train_offline(fresh("bc", other), other, run_dir=tmp_path / "run", resume=True, **SETTINGS)
    with pytest.raises(CheckpointError, match="trained 'bc', not 'iql'"):
        offrl.train_offline(fresh("iql", pendulum_dataset), pendulum_dataset, run_dir=tmp_path / "run", resume=True, **SETTINGS)


def test_resume_extends_a_finished_run(pendulum_dataset, tmp_path):
    algo = fresh("iql", pendulum_dataset)
    offrl.train_offline(algo, pendulum_dataset, run_dir=tmp_path / "run", **SETTINGS)
    longer = fresh("iql", pendulum_dataset)
    result = offrl.train_offline(longer, pendulum_dataset, run_dir=tmp_path / "run", resume=True, **{**SETTINGS, "steps": 400})
    assert result.step == 400 and longer.num_updates == 400 and longer.total_updates == 400
    assert [r["step"] for r in read_rows(tmp_path / "run/evaluations.csv")] == ["100", "200", "300", "400"]
    # the run now plans 400 steps: a later plain resume (offrl train --resume RUN) continues to that total
    assert json.loads((tmp_path / "run/config.json").read_text())["schedule"]["total_steps"] == 400


@pytest.mark.parametrize(
    "option, value, message",
    [("log_every", 0, "log_every (--log-every) must be an integer >= 1, not 0"),
     ("eval_episodes", 0, "eval_episodes (--eval-episodes) must be an integer >= 1"),
     ("checkpoint_every", -10, "checkpoint_every (--checkpoint-every) must be an integer >= 0")],
)
def test_counts_out_of_range_stop_before_anything_is_written(option, value, message, pendulum_dataset, tmp_path):
    with pytest.raises(OffrlError, match=message.replace("(", r"\(").replace(")", r"\)")):
        offrl.train_offline(fresh("bc", pendulum_dataset), pendulum_dataset, run_dir=tmp_path / "run", **{**SETTINGS, option: value})
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["metrics.csv", "seeds.json"])
def test_a_directory_with_another_runs_files_is_refused_untouched(name, pendulum_dataset, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / name).write_text("step,loss\n100,0.5\n")
    with pytest.raises(CheckpointError, match=f"already holds {name}"):
        offrl.train_offline(fresh("bc", pendulum_dataset), pendulum_dataset, run_dir=tmp_path / "run", **SETTINGS)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [name]
    assert (tmp_path / "run" / name).read_text() == "step,loss\n100,0.5\n"


def test_a_run_directory_or_buffer_file_that_cannot_be_written_is_named_first(pendulum_dataset, tmp_path):
    (tmp_path / "file").write_text("mine")
    with pytest.raises(OffrlError, match="is a file, not a directory"):
        offrl.train_offline(fresh("bc", pendulum_dataset), pendulum_dataset, run_dir=tmp_path / "file", **SETTINGS)
    sac = offrl.make_algo("sac", pendulum_dataset.observation_space, pendulum_dataset.action_space, hidden_dims=(32, 32))
    with pytest.raises(OffrlError, match="save_buffer .*is a file, not a directory"):
        offrl.train_online(sac, "Pendulum-v1", steps=10, warmup_steps=5, run_dir=tmp_path / "sac", save_buffer=tmp_path / "file" / "b.hdf5",
                    progress=False, tensorboard=False)
    assert (tmp_path / "file").read_text() == "mine" and not (tmp_path / "sac").exists()


def test_environment_that_does_not_match_the_data(pendulum_dataset, tmp_path):
    with pytest.raises(OffrlError, match=r"Hopper-v5 has observations of shape \(11,\).*\(3,\)"):
        offrl.train_offline(fresh("bc", pendulum_dataset), pendulum_dataset, run_dir=tmp_path / "r", **{**SETTINGS, "env": "Hopper-v5"})
    assert not (tmp_path / "r").exists()  # nothing written: the corrected command can use the same directory
    offrl.train_offline(fresh("bc", pendulum_dataset), pendulum_dataset, run_dir=tmp_path / "r", **SETTINGS)


def test_a_run_that_crashed_before_its_first_checkpoint_resumes(pendulum_dataset, tmp_path):
    algo = fresh("bc", pendulum_dataset)
    original = algo.update
    algo.update = lambda batch: (_ for _ in ()).throw(RuntimeError("power cut"))
    with pytest.raises(RuntimeError, match="power cut"):
        offrl.train_offline(algo, pendulum_dataset, run_dir=tmp_path / "r", **SETTINGS)
    algo.update = original
    whole = fresh("bc", pendulum_dataset)
    offrl.train_offline(whole, pendulum_dataset, run_dir=tmp_path / "whole", **SETTINGS)
    resumed = fresh("bc", pendulum_dataset)
    result = offrl.train_offline(resumed, pendulum_dataset, run_dir=tmp_path / "r", resume=True, **SETTINGS)
    assert result.step == 300
    assert read_rows(tmp_path / "r/metrics.csv") == read_rows(tmp_path / "whole/metrics.csv")


def test_dataset_actions_outside_the_env_bounds(pendulum_dataset, tmp_path):
    wide = pendulum_dataset.take(slice(None))
    wide.action_space = type(wide.action_space)(-3.0, 3.0, (1,), np.float32)
    wide.actions = wide.actions * 1.4  # up to 2.8: legal for the dataset's space, not for Pendulum's [-2, 2]
    with pytest.raises(DatasetError, match="outside the action bounds"):
        offrl.train_offline(fresh("bc", wide), wide, run_dir=tmp_path / "r", **SETTINGS)


def test_no_environment_means_no_evaluation(pendulum_dataset, tmp_path):
    result = offrl.train_offline(
        fresh("bc", pendulum_dataset), pendulum_dataset, run_dir=tmp_path / "r", **{**SETTINGS, "env": None}
    )
    assert result.final_eval is None and not (tmp_path / "r/final_eval.json").exists()
    assert (tmp_path / "r/learning_curve.png").exists()


def test_bf16_training_is_recorded_and_resumes_in_bf16(pendulum_dataset, tmp_path, monkeypatch):
    """``offrl train --precision bf16``: the run's config says so, its checkpoints hold float32 weights,
    and ``--resume`` continues in bf16 unless told otherwise."""
    from offrl import cli
    from offrl.train.checkpoint import read_checkpoint
    from tests.data.test_formats import write_d4rl

    write_d4rl(tmp_path / "pend.hdf5", pendulum_dataset, next_observations=False)
    given = []
    real_train = trainer.train
    monkeypatch.setattr(trainer, "train", lambda *a, **k: given.append(k["precision"]) or real_train(*a, **k))
    base = ["train", "--no-progress", "--eval-every", "0", "--log-every", "10"]
    run = str(tmp_path / "run")
    assert cli.main([*base, "--algo", "td3_bc", "--dataset", str(tmp_path / "pend.hdf5"), "--steps", "20", "--run-dir", run,
                     "--precision", "bf16", "--set", "hidden_dims=32,32"]) == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["precision"] == "bf16"
    _, tensors = read_checkpoint(tmp_path / "run")
    assert all(t.dtype == torch.float32 for t in tensors.values() if t.is_floating_point())
    assert cli.main([*base, "--resume", run, "--steps", "30"]) == 0
    assert cli.main([*base, "--resume", run, "--steps", "40", "--precision", "fp32"]) == 0
    assert given == ["bf16", "bf16", "fp32"]


def test_an_unknown_precision_stops_before_the_run_starts(pendulum_dataset, tmp_path):
    algo = offrl.make_algo("bc", pendulum_dataset.observation_space, pendulum_dataset.action_space, hidden_dims=(32, 32))
    with pytest.raises(OffrlError, match="precision must be one of fp32, bf16, not 'half'"):
        offrl.train_offline(algo, pendulum_dataset, steps=10, eval_every=0, run_dir=tmp_path / "run", precision="half", progress=False)
    assert not (tmp_path / "run").exists()


def test_a_damaged_trainer_state_in_a_checkpoint_is_one_error(pendulum_dataset, tmp_path):
    offrl.train_offline(fresh("bc", pendulum_dataset), pendulum_dataset, run_dir=tmp_path / "run", **SETTINGS)
    latest = sorted((tmp_path / "run/checkpoints").glob("step_*.json"))[-1]
    meta = json.loads(latest.read_text())
    meta["trainer"]["metric_counts"] = {"not_a_metric": 3}
    latest.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="trainer state is damaged"):
        offrl.train_offline(fresh("bc", pendulum_dataset), pendulum_dataset, run_dir=tmp_path / "run", resume=True,
                            **{**SETTINGS, "steps": 400})


def test_arguments_in_the_wrong_place_are_one_clear_error(pendulum_dataset, tmp_path):
    algo = fresh("bc", pendulum_dataset)
    with pytest.raises(OffrlError, match=r"dataset must be an offrl Dataset, not str \(load it with offrl.load_dataset"):
        offrl.train_offline(algo, "pendulum.hdf5", steps=10)
    with pytest.raises(OffrlError, match="env must be a Gymnasium environment id"):
        offrl.train_online(algo, pendulum_dataset)
    with pytest.raises(OffrlError, match="algo must be an algorithm"):
        offrl.train_offline("bc", pendulum_dataset)
    with pytest.raises(OffrlError, match="steps must be an integer, not 2.5"):
        offrl.train_offline(algo, pendulum_dataset, steps=2.5)
    assert not any(tmp_path.iterdir())


def test_a_diverging_run_stops_without_saving_non_finite_weights(pendulum_dataset, tmp_path):
    huge = pendulum_dataset.subset(range(5))
    huge.rewards = np.sign(huge.rewards - huge.rewards.mean()).astype(np.float32) * 3e38  # valid float32, overflows in the TD loss
    algo = offrl.make_algo("td3_bc", huge.observation_space, huge.action_space, seed=0, hidden_dims=(16, 16))
    with pytest.raises(trainer.TrainingDiverged, match="training diverged by step 10: critic_loss"):
        offrl.train_offline(algo, huge, steps=40, log_every=10, eval_every=0, run_dir=tmp_path / "run", progress=False)
    assert [p.name for p in sorted((tmp_path / "run/checkpoints").glob("step_*.json"))] == ["step_000000000.json"]
    assert read_rows(tmp_path / "run/metrics.csv")[0]["critic_loss"] == "nan"  # the row that shows it is logged


def test_returns_equal_up_to_rounding_are_not_scaled():
    from offrl.train.run import reward_scale

    data = random_dataset(n=100, episode_length=50)
    data.rewards[:] = 1.0
    data.rewards[0] = np.float32(1.0000001)  # one float32 ulp between the two episodes' returns
    assert reward_scale(data, "returns_range", 1000.0) == 1.0
    data.rewards[0] = 2.0
    assert reward_scale(data, "returns_range", 1000.0) == pytest.approx(1000.0)
