from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import safetensors.torch
import torch

import offrl
from offrl.data.batch import Batch
from offrl.errors import CheckpointError
from offrl.train.checkpoint import list_checkpoints, load_algo, restore_algo, read_checkpoint, save_checkpoint


@pytest.fixture
def algo(pendulum_dataset):
    return offrl.make_algo("td3_bc", pendulum_dataset.observation_space, pendulum_dataset.action_space, seed=0, hidden_dims=(16,))


def test_checkpoint_files_are_safetensors_and_json(algo, tmp_path):
    stem = save_checkpoint(tmp_path, algo, step=7)
    meta = json.loads(stem.with_suffix(".json").read_text())
    assert meta["algo"] == "td3_bc" and meta["step"] == 7 and meta["format_version"] == 1
    assert meta["config"]["hidden_dims"] == [16]
    tensors = safetensors.torch.load_file(str(stem.with_suffix(".safetensors")))
    assert "model/actor.net.0.weight" in tensors and "rng/torch" in tensors
    assert "model/encoder.mean" in tensors  # observation normalization travels with the weights


def test_keep_prunes_old_checkpoints(algo, tmp_path):
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, algo, step=step, keep=2)
    assert [s.name for s in list_checkpoints(tmp_path)] == ["step_000000003", "step_000000004"]
    assert json.loads((tmp_path / "latest.json").read_text())["step"] == 4


def test_failed_write_leaves_the_previous_checkpoint(algo, tmp_path, monkeypatch):
    save_checkpoint(tmp_path, algo, step=1)

    def broken(tensors, filename):
        with open(filename, "wb") as handle:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, algo, step=2)
    assert [s.name for s in list_checkpoints(tmp_path)] == ["step_000000001"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.json", "step_000000001.json", "step_000000001.safetensors"]
    assert load_algo(tmp_path).num_updates == 0


def test_corrupt_tensors(algo, tmp_path):
    stem = save_checkpoint(tmp_path, algo, step=1)
    data = stem.with_suffix(".safetensors").read_bytes()
    stem.with_suffix(".safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_algo(tmp_path)


@pytest.mark.parametrize(
    "edit, message",
    [(lambda m: m.update(format_version="1"), "'format_version' should be int, found '1'"),
     (lambda m: m.pop("optimizers"), "the checkpoint has no 'optimizers' entry"),
     (lambda m: m.update(step="abc"), "'step' should be int, found 'abc'"),
     (lambda m: m.update(config="x"), "'config' should be dict"),
     (lambda m: m.update(action_space={"type": "Sphere"}), "'action_space' is not a space offrl wrote")],
)
def test_hand_edited_metadata_is_one_error_naming_the_key(algo, tmp_path, edit, message):
    stem = save_checkpoint(tmp_path, algo, step=1)
    meta = json.loads(stem.with_suffix(".json").read_text())
    edit(meta)
    stem.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=message):
        load_algo(tmp_path)


def test_not_a_run(tmp_path):
    with pytest.raises(CheckpointError, match="no such run directory"):
        load_algo(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        load_algo(tmp_path)
    (tmp_path / "step_000000001.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(CheckpointError, match="not an offrl checkpoint"):
        read_checkpoint(tmp_path)


def test_networks_of_another_shape_are_refused(algo, tmp_path, pendulum_dataset):
    save_checkpoint(tmp_path, algo, step=1)
    meta, tensors = read_checkpoint(tmp_path)
    wider = offrl.make_algo("td3_bc", pendulum_dataset.observation_space, pendulum_dataset.action_space, hidden_dims=(32,))
    with pytest.raises(CheckpointError, match="do not match this td3_bc configuration.*shape differs"):
        restore_algo(wider, meta, tensors)
    bc = offrl.make_algo("bc", pendulum_dataset.observation_space, pendulum_dataset.action_space)
    with pytest.raises(CheckpointError, match="written by 'td3_bc' and cannot be loaded into 'bc'"):
        restore_algo(bc, meta, tensors)


# Written by offrl at commit fc6105e (discrete BCQ's Q and imitation heads as two MLPs), before they became one
# 2-member ensemble: the checkpoint after three updates, the networks' outputs on fixed observations, and a fourth
# update's batch with the outputs after it (that update reads the Adam moments the checkpoint carries).
TWO_HEADS = Path(__file__).resolve().parents[1] / "fixtures" / "discrete_bcq_two_heads"


@pytest.mark.parametrize("case", ["vectors", "minatar"])
def test_discrete_bcq_checkpoint_with_two_head_networks_loads_and_resumes(case):
    expected = json.loads((TWO_HEADS / "expected.json").read_text())[case]
    algo = load_algo(TWO_HEADS / case, algo="discrete_bcq")
    observations = torch.tensor(expected["observations"])
    with torch.no_grad():
        q_values, logits = algo.net(algo.encoder(observations))
        target = algo.net_target.q_values(algo.encoder(observations))
    torch.testing.assert_close(q_values, torch.tensor(expected["q_values"]))
    torch.testing.assert_close(logits, torch.tensor(expected["logits"]))
    torch.testing.assert_close(target, torch.tensor(expected["target_q_values"]))
    assert algo.act(observations).tolist() == expected["actions"]
    assert algo.num_updates == 3

    algo.update(Batch(**{key: torch.tensor(value) for key, value in expected["next_batch"].items()}))
    with torch.no_grad():
        q_values, logits = algo.net(algo.encoder(observations))
    # lr 1e-2 with three steps of moments behind it: fresh moments would move these by about 1e-2
    torch.testing.assert_close(q_values, torch.tensor(expected["q_values_after"]), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(logits, torch.tensor(expected["logits_after"]), atol=1e-5, rtol=1e-4)


def test_two_head_checkpoint_with_fresh_moments_would_not_resume_the_same():
    """The check above can fail: the same fourth update from the migrated weights with reset Adam moments lands elsewhere."""
    expected = json.loads((TWO_HEADS / "expected.json").read_text())["vectors"]
    algo = load_algo(TWO_HEADS / "vectors", algo="discrete_bcq", optimizers=False)
    algo.update(Batch(**{key: torch.tensor(value) for key, value in expected["next_batch"].items()}))
    with torch.no_grad():
        q_values, _ = algo.net(algo.encoder(torch.tensor(expected["observations"])))
    assert (q_values - torch.tensor(expected["q_values_after"])).abs().max() > 1e-3


def test_two_head_checkpoint_without_optimizer_state_loads(tmp_path):
    """A checkpoint written before the first update has no Adam moments to stack: the optimizer starts fresh."""
    run = tmp_path / "vectors"
    shutil.copytree(TWO_HEADS / "vectors", run)
    stem = run / "step_000000003.safetensors"
    tensors = {k: v for k, v in safetensors.torch.load_file(str(stem)).items() if not k.startswith("optim/")}
    safetensors.torch.save_file(tensors, str(stem))
    algo = load_algo(run, algo="discrete_bcq")
    assert not algo.optimizers["q"].state
    expected = json.loads((TWO_HEADS / "expected.json").read_text())["vectors"]
    with torch.no_grad():
        q_values, _ = algo.net(algo.encoder(torch.tensor(expected["observations"])))
    torch.testing.assert_close(q_values, torch.tensor(expected["q_values"]))
