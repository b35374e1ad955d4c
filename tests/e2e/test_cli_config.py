"""Config files: `offrl config template ALGO`, edit, `offrl train --config FILE` (flags on the command line win)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tyro

from offrl.cli import TrainArgs, _with_config_file, main
from offrl.errors import ConfigError, OffrlError
from tests.data.test_formats import write_d4rl
from tests.e2e.test_cli import offrl


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, pendulum_dataset) -> Path:
    path = tmp_path_factory.mktemp("cli-config")
    write_d4rl(path / "pend.hdf5", pendulum_dataset, next_observations=False)
    return path


def test_template_edit_train_and_override_with_flags(workdir):
    template = json.loads(offrl("config", "template", "iql", cwd=workdir).stdout)
    assert template["algo"] == "iql" and template["algo_config"]["expectile"] == 0.7
    assert template["algo_config"]["# expectile"].startswith("tau of the expectile loss")
    assert template["train"]["steps"] == 1_000_000 and "# eval_every" in template["train"]
    template["algo_config"].update(expectile=0.8, hidden_dims=[16, 16])
    template["train"].update(dataset="pend.hdf5", steps=30, eval_every=0, log_every=10, progress=False, run_dir="runs/file")
    (workdir / "iql.json").write_text(json.dumps(template, indent=2))

    offrl("train", "--config", "iql.json", cwd=workdir)
    config = json.loads((workdir / "runs/file/config.json").read_text())
    assert config["algo"] == "iql" and config["algo_config"]["expectile"] == 0.8
    assert config["algo_config"]["hidden_dims"] == [16, 16]
    assert config["train"]["steps"] == 30 and config["train"]["log_every"] == 10 and config["train"]["eval_every"] == 0

    offrl("train", "--config", "iql.json", "--dataset", "pend.hdf5", "--steps", "20", "--run-dir", "runs/flags",
          "--set", "expectile=0.6", cwd=workdir)
    config = json.loads((workdir / "runs/flags/config.json").read_text())
    assert config["train"]["steps"] == 20 and config["train"]["log_every"] == 10  # the flag, then the file
    assert config["algo_config"]["expectile"] == 0.6 and config["algo_config"]["hidden_dims"] == [16, 16]


def test_template_out_refuses_to_overwrite(workdir, capsys):
    assert "wrote bc.json" in offrl("config", "template", "bc", "--out", "bc.json", cwd=workdir).stdout
    assert json.loads((workdir / "bc.json").read_text())["algo"] == "bc"
    out = str(workdir / "bc.json")
    assert main(["config", "template", "td3_bc", "--out", out]) == 2
    assert "already exists" in capsys.readouterr().err and json.loads(Path(out).read_text())["algo"] == "bc"
    assert main(["config", "template", "td3_bc", "--out", out, "--force"]) == 0
    assert json.loads(Path(out).read_text())["algo"] == "td3_bc"


def test_config_command_errors(capsys):
    assert main(["config", "template", "iqll"]) == 2
    assert "unknown algorithm 'iqll'; did you mean iql?" in capsys.readouterr().err
    assert main(["config"]) == 2
    assert "usage: offrl config {template}" in capsys.readouterr().err
    assert main(["--help"]) == 0 and "config template" in capsys.readouterr().out


def write_config(path: Path, algo_config: dict | None = None, train: dict | None = None, **top) -> Path:
    path.write_text(json.dumps({"algo": "bc", "algo_config": algo_config or {}, "train": train or {}, **top}))
    return path


@pytest.mark.parametrize(
    "content, fragments",
    [
        ({"algo_config": {"lrr": 0.1}}, ["algo_config: unknown key 'lrr'", "did you mean 'lr'"]),
        ({"algo_config": {"lr": "fast"}}, ["algo_config: lr='fast'", "expected a number"]),
        ({"train": {"stepz": 5}}, ["train: unknown key 'stepz'", "did you mean 'steps'"]),
        ({"train": {"steps": "many"}}, ["train: steps='many'", "integer"]),
        ({"train": {"resume": "runs/x"}}, ["train: 'resume' does not belong in the train section", "--resume"]),
        ({"trian": {}}, ["unknown key 'trian' at the top level", "did you mean 'train'"]),
        ({"algo": "bcc"}, ["unknown algorithm 'bcc'", "did you mean bc"]),
    ],
)
def test_file_errors_are_one_line_naming_file_section_and_key(tmp_path, capsys, content, fragments):
    path = write_config(tmp_path / "bad.json", **content)
    assert main(["train", "--config", str(path), "--dataset", "unused.hdf5"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error
    for fragment in [str(path), *fragments]:
        assert fragment in error


def test_flags_written_on_the_command_line_override_the_train_section(tmp_path):
    path = write_config(
        tmp_path / "c.json",
        train={"# steps": "a comment", "steps": 500, "eval_every": 50, "progress": True, "offline_ratio": 0.25, "seed": 4},
    )

    def resolved(*flags: str) -> TrainArgs:
        argv = ["--config", str(path), *flags]
        return _with_config_file(tyro.cli(TrainArgs, args=argv), argv)

    from_file = resolved()
    assert (from_file.steps, from_file.eval_every, from_file.progress, from_file.offline_ratio) == (500, 50, True, "0.25")
    assert from_file.eval_episodes == TrainArgs.eval_episodes  # neither written nor in the file: the default
    flags = resolved("--steps", "20", "--eval-every=0", "--no-progress", "--seed", "0")
    assert (flags.steps, flags.eval_every, flags.progress, flags.seed, flags.offline_ratio) == (20, 0, False, 0, "0.25")


def test_the_train_section_is_checked_before_anything_runs(tmp_path):
    path = write_config(tmp_path / "c.json", train={"eval_every": -1.5})
    with pytest.raises(ConfigError, match=r"train: eval_every=-1.5: expected an integer"):
        _with_config_file(TrainArgs(config=str(path)), [])
    with pytest.raises(OffrlError, match="use the file's algo_config section"):
        _with_config_file(TrainArgs(config=str(write_config(tmp_path / "d.json", train={"set": ["lr=1"]}))), [])
