"""The dataset zoo: recipes rolled out from the shipped behaviour policies."""

from __future__ import annotations

import numpy as np
import pytest

from offrl.data import load_dataset
from offrl.errors import DatasetError
from offrl.zoo import datasets as zoo
from offrl.zoo.scores import reference_returns


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OFFRL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_names():
    assert zoo.parse_name("hopper-medium-replay") == zoo.ZooName("hopper", "medium-replay")
    assert zoo.parse_name("pendulum-medium-expert").env_id == "Pendulum-v1"
    assert zoo.parse_name("hopper-good") is None and zoo.parse_name("ant-medium") is None
    with pytest.raises(DatasetError, match="not a zoo dataset name"):
        zoo.build("hopper-good")


def test_each_pendulum_variant_builds_at_a_tiny_size():
    sizes = {}
    for variant in zoo.VARIANTS:
        path = zoo.build(f"pendulum-{variant}", size=600)
        dataset = load_dataset(path)
        sizes[variant] = len(dataset)
        assert dataset.metadata["zoo_name"] == f"pendulum-{variant}"
        assert reference_returns("Pendulum-v1", dataset.metadata).source == "offrl zoo pendulum"
        assert dataset.timeouts[-1] and not dataset.terminals.any()
    assert sizes == {"random": 600, "medium": 600, "medium-replay": 600, "expert": 600, "medium-expert": 1200}


def test_a_damaged_cached_file_is_built_again(cache):
    path = zoo.build("pendulum-random", size=300)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 3])  # truncated after offrl wrote it
    messages = []
    assert zoo.build("pendulum-random", size=300, log=messages.append) == path
    assert any("is damaged" in m for m in messages) and len(load_dataset(path)) == 300


def test_variants_are_ordered_by_quality():
    returns = {}
    for variant in ("random", "medium", "expert"):
        dataset = load_dataset(zoo.build(f"pendulum-{variant}", size=4000))
        returns[variant] = dataset.episode_returns().mean()
    assert returns["random"] < returns["medium"] - 200 < returns["expert"] - 400


def test_medium_replay_follows_the_training_snapshots():
    info = zoo.manifest("pendulum")
    dataset = load_dataset(zoo.build("pendulum-medium-replay"))
    assert len(dataset) == info["medium_env_steps"]
    # one environment stream: full-length episodes, except the one the recording cuts off
    assert (dataset.episode_lengths()[:-1] == 200).all()
    spans = zoo._recipe(zoo.parse_name("pendulum-medium-replay"), info, len(dataset))
    assert spans[0] == ("uniform", info["warmup_env_steps"]) and sum(n for _, n in spans) == len(dataset)


def test_builds_are_deterministic_and_cached(cache):
    first = zoo.build("pendulum-medium", size=500, seed=3)
    fingerprint = load_dataset(first).fingerprint()
    modified = first.stat().st_mtime_ns
    assert zoo.build("pendulum-medium", size=500, seed=3) == first and first.stat().st_mtime_ns == modified
    rebuilt = zoo.build("pendulum-medium", size=500, seed=3, force=True)
    assert load_dataset(rebuilt).fingerprint() == fingerprint
    assert load_dataset(zoo.build("pendulum-medium", size=500, seed=4)).fingerprint() != fingerprint
    assert first.parent == cache / "datasets"
    listed = {row["name"]: row for row in zoo.available()}
    assert listed["pendulum-medium"]["built"] == ["500 (seed 3)", "500 (seed 4)"] and listed["pendulum-medium"]["policies"]


def test_a_zoo_name_loads_anywhere_and_builds_on_first_use(monkeypatch, cache):
    monkeypatch.setattr(zoo, "DEFAULT_SIZE", 400)
    dataset = load_dataset("pendulum-expert")
    assert len(dataset) == 400 and (cache / "datasets" / "pendulum-expert-400-seed0.hdf5").is_file()


def test_missing_policies_are_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(zoo, "POLICY_DIR", tmp_path / "none")
    monkeypatch.setattr(zoo, "manifest", lambda family: None)
    with pytest.raises(DatasetError, match="behaviour policies for hopper are not in this offrl installation"):
        zoo.build("hopper-medium", size=10)


def test_shipped_policies_are_small_and_seeded():
    files = list(zoo.POLICY_DIR.rglob("*.safetensors"))
    assert files and max(f.stat().st_size for f in files) < 400_000
    policy_a = zoo.ShippedPolicy("pendulum", "expert", seed=1)
    policy_b = zoo.ShippedPolicy("pendulum", "expert", seed=1)
    observations = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_array_equal(policy_a(observations), policy_b(observations))
    assert np.all(np.abs(policy_a(observations)) <= 2.0)
