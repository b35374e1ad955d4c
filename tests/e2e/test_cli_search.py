"""`offrl search` as the README shows it: search, resume, evaluate the elite, one-line errors."""

from __future__ import annotations

import csv
import json

from tests.e2e.test_cli import assert_user_error, offrl, workdir  # noqa: F401 - the fixture: pend.hdf5 in a fresh directory


def test_search_resume_and_evaluate_the_elite(workdir):
    out = offrl(
        "search", "--algo", "td3_bc", "--dataset", "pend.hdf5", "--env", "Pendulum-v1", "--population", "3",
        "--evo-steps", "50", "--max-steps", "100", "--space", "lr=1e-4:1e-2:log", "--space", "batch_size=32:128:int",
        "--set", "hidden_dims=32,32", "--set", "batch_size=64", "--eval-episodes", "2", "--eval-envs", "2",
        "--run-dir", "runs/search", "--rl-hp-mutation", "0.6", "--no-mutation", "0.2", cwd=workdir,
    ).stdout
    assert "generation 0: best" in out and "generation 1: best" in out
    assert "elite run: runs/search/elite" in out
    with open(workdir / "runs/search/lineage.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 and {"lr", "batch_size", "fitness", "parent", "mutation"} <= set(rows[0])
    assert all(1e-4 <= float(r["lr"]) <= 1e-2 and 32 <= int(r["batch_size"]) <= 128 for r in rows[3:])
    assert (workdir / "runs/search/search.png").is_file()

    resumed = offrl("search", "--resume", "runs/search", "--max-steps", "150", cwd=workdir).stdout
    assert "generation 2: best" in resumed and "generation 0" not in resumed
    saved = json.loads((workdir / "runs/search/search.json").read_text())
    assert saved["cli"]["space"] == ["lr=1e-4:1e-2:log", "batch_size=32:128:int"]

    evaluated = json.loads(offrl("eval", "runs/search/elite", "--episodes", "2", "--json", cwd=workdir).stdout)
    assert evaluated["algo"] == "td3_bc" and evaluated["step"] == 150 and evaluated["episodes"] == 2
    # no simulator: the elite's return estimated from the data by fitted Q evaluation
    estimated = json.loads(offrl("eval", "runs/search/elite", "--dataset", "pend.hdf5", "--fqe-steps", "300", "--json", cwd=workdir).stdout)
    assert estimated["method"] == "fitted_q_evaluation" and -1630 < estimated["estimated_return"] < 0


def test_online_search_resume_and_evaluate_the_elite(workdir):
    out = offrl(
        "search", "--algo", "sac", "--env", "Pendulum-v1", "--online", "--population", "2", "--evo-steps", "100",
        "--max-steps", "200", "--warmup-steps", "100", "--collect-every", "50", "--set", "hidden_dims=32,32",
        "--eval-episodes", "2", "--eval-envs", "2", "--run-dir", "runs/online", cwd=workdir,
    ).stdout
    assert "generation 1: best" in out and "elite run: runs/online/elite" in out
    resumed = offrl("search", "--resume", "runs/online", "--max-steps", "300", cwd=workdir).stdout
    assert "generation 2: best" in resumed
    with open(workdir / "runs/online/lineage.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["env_steps"]) for r in rows[-2:]] == [300, 300]
    evaluated = json.loads(offrl("eval", "runs/online/elite", "--episodes", "2", "--json", cwd=workdir).stdout)
    assert evaluated["algo"] == "sac" and evaluated["step"] == 300
    assert_user_error(
        offrl("search", "--algo", "sac", "--online", "--run-dir", "x", cwd=workdir, check=False), "give env (--env)"
    )
    assert_user_error(offrl("search", "--algo", "sac", "--env", "Pendulum-v1", "--run-dir", "x", cwd=workdir, check=False), "--online")


def test_search_errors_are_one_line(workdir):
    assert_user_error(
        offrl("search", "--algo", "td3_bc", "--dataset", "pend.hdf5", "--fqe-steps", "0", "--run-dir", "x", cwd=workdir, check=False),
        "fitted Q evaluation needs fqe_steps >= 1",
    )
    assert_user_error(
        offrl("search", "--algo", "bc", "--dataset", "pend.hdf5", "--space", "lrr=1e-4:1e-2:log", "--run-dir", "x", cwd=workdir, check=False),
        "unknown key 'lrr'", "did you mean 'lr'",
    )
    assert_user_error(
        offrl("search", "--algo", "bc", "--dataset", "pend.hdf5", "--space", "lr=1e-2", "--run-dir", "x", cwd=workdir, check=False),
        "a fixed value is --set",
    )
    assert_user_error(offrl("search", "--resume", "nowhere", cwd=workdir, check=False), "not an offrl search directory")
    assert_user_error(
        offrl("search", "--resume", "nowhere", "--population", "4", cwd=workdir, check=False), "drop --population"
    )
    assert_user_error(
        offrl("search", "--algo", "bc", "--dataset", "missing.hdf5", "--run-dir", "x", cwd=workdir, check=False), "missing.hdf5"
    )
