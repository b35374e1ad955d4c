from __future__ import annotations

import json

import pytest
import safetensors.torch

import offrl
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
