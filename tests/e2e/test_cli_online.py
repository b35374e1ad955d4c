"""The online, hybrid, collection and zoo commands of the README, as a user runs them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.data.test_formats import write_d4rl
from tests.e2e.test_cli import assert_user_error, offrl

REPO = Path(__file__).resolve().parents[2]
QUIET = ["--eval-every", "0", "--eval-episodes", "2", "--no-progress", "--set", "hidden_dims=32,32"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, pendulum_dataset) -> Path:
    path = tmp_path_factory.mktemp("cli-online")
    write_d4rl(path / "pend.hdf5", pendulum_dataset, next_observations=True)
    os.environ["OFFRL_CACHE_DIR"] = str(path / "cache")
    yield path
    del os.environ["OFFRL_CACHE_DIR"]


def config(workdir: Path, run: str) -> dict:
    return json.loads((workdir / run / "config.json").read_text())


def test_online_then_record_then_offline(workdir):
    out = offrl("train", "--algo", "sac", "--env", "Pendulum-v1", "--steps", "300", "--warmup-steps", "100",
                "--save-buffer", "runs/sac/buffer.hdf5", "--run-dir", "runs/sac", *QUIET, cwd=workdir).stdout
    assert "environment steps: 400" in out and config(workdir, "runs/sac")["mode"] == "online"
    info = json.loads(offrl("datasets", "info", "runs/sac/buffer.hdf5", "--json", cwd=workdir).stdout)
    assert info["transitions"] == 400 and info["episodes"] == 2
    offrl("train", "--algo", "bc", "--dataset", "runs/sac/buffer.hdf5", "--steps", "20", "--run-dir", "runs/bc", *QUIET, cwd=workdir)
    # extended, the run's replay buffer grows with it (sized for 300 steps it would drop the first transitions)
    resumed = offrl("train", "--resume", "runs/sac", "--steps", "400", "--no-progress", cwd=workdir)
    assert "environment steps: 500" in resumed.stdout
    # the run's own buffer file is replaced by the longer run's (a user's file at another path never is)
    assert json.loads(offrl("datasets", "info", "runs/sac/buffer.hdf5", "--json", cwd=workdir).stdout)["transitions"] == 500
    schedule = config(workdir, "runs/sac")["schedule"]
    assert schedule["total_steps"] == 400 and schedule["buffer_size"] == 501 and schedule["mode"] == "online"

    collected = offrl("datasets", "collect", "--env", "Pendulum-v1", "--policy", "runs/sac", "--episodes", "2",
                      "--noise", "0.1", "--out", "expert.hdf5", cwd=workdir).stdout
    assert "400 transitions, 2 episodes" in collected
    assert json.loads(offrl("datasets", "info", "expert.hdf5", "--json", cwd=workdir).stdout)["metadata"]["format"] == "d4rl"


def test_hybrid_alf_schedule_and_offline_to_online(workdir):
    out = offrl("train", "--algo", "sac", "--env", "Pendulum-v1", "--dataset", "pend.hdf5", "--offline-ratio", "0.5",
                "--utd-ratio", "1", "--steps", "100", "--warmup-steps", "50", "--run-dir", "runs/hybrid", *QUIET, cwd=workdir).stdout
    assert "environment steps: 150" in out
    assert config(workdir, "runs/hybrid")["schedule"]["offline_ratio"] == 0.5
    out = offrl("train", "--algo", "sac", "--env", "Pendulum-v1", "--dataset", "pend.hdf5", "--rl-train-after-update-steps", "100",
                "--rl-train-every-update-steps", "2", "--steps", "200", "--run-dir", "runs/alf", *QUIET, cwd=workdir).stdout
    assert "environment steps: 50" in out  # RL updates at steps 100, 102, ..., 198
    out = offrl("train", "--algo", "iql", "--dataset", "pend.hdf5", "--env", "Pendulum-v1", "--steps", "100",
                "--online-steps", "100", "--run-dir", "runs/iql-o2o", *QUIET, cwd=workdir).stdout
    assert "steps: 200" in out and "environment steps: 100" in out
    assert config(workdir, "runs/iql-o2o")["mode"] == "offline-to-online"
    out = offrl("train", "--resume", "runs/iql-o2o", "--steps", "250", "--no-progress", cwd=workdir).stdout
    assert "steps: 250" in out and "environment steps: 150" in out
    assert_user_error(offrl("train", "--resume", "runs/iql-o2o", "--utd-ratio", "2", cwd=workdir, check=False), "drop --utd-ratio")


def test_init_from_an_offline_run(workdir):
    offrl("train", "--algo", "iql", "--dataset", "pend.hdf5", "--steps", "30", "--run-dir", "runs/iql-offline", *QUIET, cwd=workdir)
    out = offrl("train", "--algo", "iql", "--env", "Pendulum-v1", "--init-from", "runs/iql-offline", "--steps", "30",
                "--warmup-steps", "10", "--run-dir", "runs/iql-online", *QUIET, cwd=workdir).stdout
    assert "environment steps: 40" in out


def test_collect_controllers_and_zoo(workdir):
    out = offrl("datasets", "collect", "--env", "Pendulum-v1", "--policy", "offrl.zoo.pendulum:energy_pump",
                "--steps", "1000", "--out", "scripted.hdf5", cwd=workdir).stdout
    assert "1,000 transitions, 5 episodes" in out
    offrl("datasets", "collect", "--env", "Pendulum-v1", "--policy", "random", "--episodes", "1", "--out", "random.npz", cwd=workdir)
    assert_user_error(offrl("datasets", "collect", "--env", "Pendulum-v1", "--policy", "random", "--episodes", "1",
                            "--out", "random.npz", cwd=workdir, check=False), "already exists")
    path = offrl("datasets", "build", "pendulum-medium", "--size", "500", cwd=workdir).stdout.strip()
    assert path.endswith("pendulum-medium-500-seed0.hdf5") and Path(path).is_file()
    listing = offrl("datasets", "list", cwd=workdir).stdout
    assert "pendulum-medium " in listing and "500" in listing and "hopper-medium-replay" in listing
    out = offrl("train", "--algo", "bc", "--dataset", "pendulum-medium-replay", "--steps", "20", "--run-dir", "runs/zoo",
                *QUIET, cwd=workdir)
    assert "built pendulum-medium-replay" in out.stderr
    assert_user_error(offrl("datasets", "build", "pendulum-great", cwd=workdir, check=False), "not a zoo dataset name")


def test_custom_hybrid_algorithm_from_the_command_line(workdir):
    example = str(REPO / "examples/hybrid_sac_bc.py")
    offrl("train", "--import", example, "--algo", "sac_bc", "--env", "Pendulum-v1", "--dataset", "pend.hdf5",
          "--rl-train-after-update-steps", "20", "--rl-train-every-update-steps", "2", "--steps", "40",
          "--run-dir", "runs/sac-bc", *QUIET, cwd=workdir)
    result = json.loads(offrl("eval", "runs/sac-bc", "--episodes", "1", "--json", cwd=workdir).stdout)
    assert result["algo"] == "sac_bc" and result["episodes"] == 1
