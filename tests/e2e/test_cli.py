"""The README's commands, run as a user runs them: the `offrl` executable in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.data.test_formats import write_d4rl

OFFRL = Path(sys.executable).parent / "offrl"


def offrl(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(OFFRL), *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, pendulum_dataset) -> Path:
    path = tmp_path_factory.mktemp("cli")
    write_d4rl(path / "pend.hdf5", pendulum_dataset, next_observations=False)
    return path


def test_the_readme_workflow(workdir):
    info = offrl("datasets", "info", "pend.hdf5", cwd=workdir).stdout
    assert "format       d4rl" in info and "transitions  5,970" in info and "episodes     30" in info
    summary = json.loads(offrl("datasets", "info", "pend.hdf5", "--json", cwd=workdir).stdout)
    assert summary["timeouts"] == 30 and summary["action_space"]["low"] == -2.0

    trained = offrl(
        "train", "--algo", "td3_bc", "--dataset", "pend.hdf5", "--env", "Pendulum-v1", "--steps", "200",
        "--eval-every", "100", "--eval-episodes", "2", "--seed", "0", "--run-dir", "runs/td3bc",
        "--set", "hidden_dims=32,32", "--set", "alpha=2.0", "--no-progress", cwd=workdir,
    ).stdout
    assert "policy return:" in trained and "learning curve: runs/td3bc/learning_curve.png" in trained
    config = json.loads((workdir / "runs/td3bc/config.json").read_text())
    assert config["algo_config"]["hidden_dims"] == [32, 32] and config["algo_config"]["alpha"] == 2.0

    offrl("train", "--resume", "runs/td3bc", "--steps", "300", "--no-progress", cwd=workdir)
    latest = json.loads((workdir / "runs/td3bc/checkpoints/latest.json").read_text())
    assert latest["step"] == 300
    rows = (workdir / "runs/td3bc/evaluations.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["100", "200", "300"]

    result = json.loads(offrl("eval", "runs/td3bc", "--env", "Pendulum-v1", "--episodes", "3", "--json", cwd=workdir).stdout)
    assert result["episodes"] == 3 and len(result["returns"]) == 3 and result["step"] == 300
    assert {"mean_return", "std_return", "normalized_score"} <= set(result)
    text = offrl("eval", "runs/td3bc", "--episodes", "2", cwd=workdir).stdout  # env from the run
    assert "td3_bc at step 300 on Pendulum-v1" in text and "normalized score" in text


def test_config_file_names_the_algorithm(workdir):
    (workdir / "iql.yaml").write_text("algo: iql\nexpectile: 0.8\nhidden_dims: [16, 16]\n")
    offrl(
        "train", "--config", "iql.yaml", "--dataset", "pend.hdf5", "--steps", "30", "--eval-every", "0",
        "--run-dir", "runs/iql", "--no-progress", cwd=workdir,
    )
    config = json.loads((workdir / "runs/iql/config.json").read_text())
    assert config["algo"] == "iql" and config["algo_config"]["expectile"] == 0.8


def test_convert_and_algos(workdir):
    out = offrl("datasets", "convert", "pend.hdf5", "pend.npz", cwd=workdir).stdout
    assert "5,970 transitions" in out
    assert "format       npz" in offrl("datasets", "info", "pend.npz", cwd=workdir).stdout
    assert_user_error(offrl("datasets", "convert", "pend.hdf5", "pend.npz", cwd=workdir, check=False), "already exists")
    listing = offrl("algos", cwd=workdir).stdout
    for name in ("bc", "td3_bc", "iql"):
        assert name in listing
    assert "Fujimoto & Gu 2021" in listing


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["datasets", "info", "missing.hdf5"], ["missing.hdf5", "no such file"]),
        (["train", "--algo", "td3bc", "--dataset", "pend.hdf5"], ["unknown algorithm 'td3bc'", "td3_bc"]),
        (["train", "--algo", "iql", "--dataset", "pend.hdf5", "--set", "expectil=0.9"], ["unknown key 'expectil'", "expectile"]),
        (["train", "--algo", "iql", "--dataset", "pend.hdf5", "--set", "expectile=high"], ["expectile=", "number"]),
        (["train", "--dataset", "pend.hdf5"], ["needs --algo"]),
        (["train", "--algo", "dqn", "--dataset", "pend.hdf5"], ["dqn needs a discrete action space", "dataset pend.hdf5"]),
        (["train", "--algo", "bc", "--dataset", "pend.hdf5", "--set", "activation=swish"], ["bc: unknown activation 'swish'"]),
        (["train", "--algo", "bc", "--dataset", "pend.hdf5", "--set", "batch_size=-4"], ["bc config: batch_size=-4: must be at least 1"]),
        (["train", "--algo", "sac", "--env", "Pendulum-v1", "--offline-ratio", "0.7"], ["--offline-ratio", "needs --dataset"]),
        (["datasets", "collect", "--env", "Pendulum-v1", "--policy", "random", "--steps", "5", "--out", "x.txt"],
         ["x.txt: cannot tell the output format"]),
        (["datasets", "collect", "--env", "Pendulum-v1", "--policy", "random", "--episodes", "0", "--out", "x.hdf5"],
         ["--episodes must be positive"]),
        (["eval", "nowhere"], ["nowhere"]),
    ],
)
def test_user_errors_are_one_line(workdir, args, fragments):
    assert_user_error(offrl(*args, cwd=workdir, check=False), *fragments)


def test_eval_on_a_mismatched_environment(workdir):
    offrl("train", "--algo", "bc", "--dataset", "pend.hdf5", "--steps", "10", "--eval-every", "0",
          "--run-dir", "runs/bc", "--no-progress", cwd=workdir)
    assert_user_error(offrl("eval", "runs/bc", "--env", "Hopper-v5", cwd=workdir, check=False), "Hopper-v5", "(11,)")
    assert_user_error(offrl("eval", "runs/bc", cwd=workdir, check=False), "pass --env")
    assert_user_error(offrl("train", "--resume", "runs/bc", "--algo", "iql", cwd=workdir, check=False), "drop --algo")


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(workdir):
    process = subprocess.Popen(
        [str(OFFRL), "train", "--algo", "bc", "--dataset", "pend.hdf5", "--steps", "1000000", "--log-every", "100",
         "--eval-every", "0", "--run-dir", "runs/stopped", "--no-progress"],
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    metrics = workdir / "runs/stopped/metrics.csv"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) > 2):
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "checkpoint saved" in stderr
    step = json.loads((workdir / "runs/stopped/checkpoints/latest.json").read_text())["step"]
    assert step >= 200
    resumed = offrl("train", "--resume", "runs/stopped", "--steps", str(step + 50), "--no-progress", cwd=workdir)
    assert f"steps: {step + 50}" in resumed.stdout


def test_demo_end_to_end(tmp_path):
    out = offrl("demo", "--steps", "300", "--episodes", "10", "--out", "demo", cwd=tmp_path).stdout
    assert "policy return (TD3+BC, 20 episodes)" in out
    assert "dataset behaviour return (10 episodes)" in out
    curve = out.split("learning curve: ")[1].split()[0]
    assert (tmp_path / curve).is_file()


def test_version_and_help(tmp_path):
    assert offrl("--version", cwd=tmp_path).stdout.startswith("offrl ")
    usage = offrl("--help", cwd=tmp_path).stdout
    for command in ("train", "eval", "datasets info", "datasets convert", "algos", "demo"):
        assert command in usage
    assert "--eval-every" in offrl("train", "--help", cwd=tmp_path).stdout
    assert os.access(OFFRL, os.X_OK)


def test_seeds_train_one_run_per_seed_and_summarize(workdir):
    common = ["--dataset", "pend.hdf5", "--env", "Pendulum-v1", "--steps", "60", "--eval-every", "0", "--eval-episodes", "2",
              "--set", "hidden_dims=16,16", "--no-progress"]
    out = offrl("train", "--algo", "bc", *common, "--seed", "3", "--seeds", "3", "--run-dir", "runs/bc-seeds", cwd=workdir).stdout
    assert "3 seeds trained as one batched model" in out
    assert ("on a CPU, --no-batch-seeds is usually faster" in out) == (not torch.cuda.is_available())  # device auto
    group = workdir / "runs/bc-seeds"
    assert sorted(p.name for p in group.iterdir()) == ["seed-3", "seed-4", "seed-5", "seeds.json"]
    summary = json.loads((group / "seeds.json").read_text())
    assert summary["seeds"] == [3, 4, 5]
    per_seed = summary["final"]["per_seed"]
    assert sorted(per_seed) == ["3", "4", "5"] and all(entry["step"] == 60 for entry in per_seed.values())
    for seed in ("3", "4", "5"):  # each seed is a normal run: its own config, seed and final evaluation
        config = json.loads((group / f"seed-{seed}/config.json").read_text())
        assert config["train"]["seed"] == int(seed)
        assert json.loads((group / f"seed-{seed}/final_eval.json").read_text())["mean_return"] == per_seed[seed]["mean_return"]
    returns = [entry["mean_return"] for entry in per_seed.values()]
    assert summary["final"]["mean_return"] == pytest.approx(sum(returns) / 3)
    assert len(set(returns)) == 3  # different seeds, different policies
    assert f"over 3 seeds" in out
    assert offrl("eval", "runs/bc-seeds/seed-4", "--episodes", "1", cwd=workdir).returncode == 0
    assert_user_error(offrl("eval", "runs/bc-seeds", cwd=workdir, check=False), "is a seed group", "runs/bc-seeds/seed-3")

    # a group cut short before its last seed started: --resume trains what is missing as configured
    import shutil

    shutil.rmtree(group / "seed-5")
    resumed = offrl("train", "--resume", "runs/bc-seeds", "--steps", "70", "--no-progress", cwd=workdir).stdout
    assert "seed 5 (3 of 3)" in resumed
    assert json.loads((group / "seed-5/config.json").read_text())["train"]["seed"] == 5
    # the resume's new total reaches the seed that starts now as well as those that go on
    assert {json.loads((group / f"seed-{s}/config.json").read_text())["schedule"]["total_steps"] for s in (3, 4, 5)} == {70}
    assert sorted(json.loads((group / "seeds.json").read_text())["final"]["per_seed"]) == ["3", "4", "5"]

    again = offrl("train", "--algo", "bc", *common, "--seeds", "2", "--run-dir", "runs/bc-seeds", cwd=workdir, check=False)
    assert_user_error(again, "runs/bc-seeds is not empty")
    assert_user_error(offrl("train", "--resume", "runs/bc-seeds", "--seeds", "2", cwd=workdir, check=False), "drop --seeds")


def test_batched_seeds_train_the_same_models_as_seeds_one_after_another(workdir):
    """BC's update draws no random numbers: the batched group and sequential runs must end with the same weights."""
    import safetensors.torch

    common = ["--dataset", "pend.hdf5", "--steps", "40", "--seeds", "2", "--set", "hidden_dims=16,16", "--no-progress"]
    batched = offrl("train", "--algo", "bc", *common, "--run-dir", "runs/bc-batched", cwd=workdir).stdout
    sequential = offrl("train", "--algo", "bc", *common, "--no-batch-seeds", "--run-dir", "runs/bc-sequential", cwd=workdir).stdout
    assert "batched model" in batched and "batched model" not in sequential
    for seed in (0, 1):
        weights = []
        for run in ("runs/bc-batched", "runs/bc-sequential"):
            checkpoints = sorted((workdir / run / f"seed-{seed}" / "checkpoints").glob("step_*.safetensors"))
            weights.append(safetensors.torch.load_file(str(checkpoints[-1])))
        assert weights[0].keys() == weights[1].keys()
        models = [key for key in weights[0] if key.startswith("model/")]  # not the RNG states: the group shares one
        assert models
        for key in models:
            assert (weights[0][key] - weights[1][key]).abs().max() < 1e-4, key
