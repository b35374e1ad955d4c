"""offrl-memmap: datasets larger than memory, read through np.load(mmap_mode="r")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

from offrl import cli
from offrl.data import Dataset, UniformSampler, detect_format, load_dataset, save_dataset
from offrl.data import memmap
from offrl.data.formats.offrl_memmap import FORMAT_VERSION, MemmapWriter
from offrl.errors import DatasetError
from tests.conftest import random_dataset


def image_dataset(n: int = 300, *, seed: int = 0) -> Dataset:
    """uint8 frames in a dict with a vector, discrete actions, terminals and timeouts."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, size=(n + 1, 12, 12), dtype=np.uint8)
    state = rng.normal(size=(n + 1, 3)).astype(np.float32)
    terminals = np.zeros(n, bool)
    terminals[49::100] = True
    timeouts = np.zeros(n, bool)
    timeouts[99::100] = True
    return Dataset(
        observations={"image": frames[:-1], "state": state[:-1]},
        actions=rng.integers(0, 6, size=n),
        rewards=rng.normal(size=n).astype(np.float32),
        next_observations={"image": frames[1:], "state": state[1:]},
        terminals=terminals,
        timeouts=timeouts,
        action_space=gym.spaces.Discrete(6),
        infos={"lives": rng.integers(0, 4, size=n)},
        metadata={"env_id": "Fake-v0", "frame_skip": 4},
    )


def assert_same(back: Dataset, original: Dataset) -> None:
    def equal(a, b):
        if isinstance(b, dict):
            assert set(a) == set(b)
            for key in b:
                equal(a[key], b[key])
        else:
            np.testing.assert_array_equal(a, b)
            assert a.dtype == b.dtype

    for name in ("observations", "next_observations", "actions", "rewards", "terminals", "timeouts", "infos"):
        equal(getattr(back, name), getattr(original, name))
    assert back.observation_space == original.observation_space
    assert back.action_space == original.action_space


def test_round_trip_memory_mapped(tmp_path):
    original = image_dataset()
    path = save_dataset(original, tmp_path / "atari.offrl")
    assert detect_format(path) == "offrl-memmap"
    files = sorted(str(p.relative_to(path)) for p in path.rglob("*.npy"))
    assert files == [
        "actions.npy", "infos/lives.npy", "next_observations/image.npy", "next_observations/state.npy",
        "observations/image.npy", "observations/state.npy", "rewards.npy", "terminals.npy", "timeouts.npy",
    ]  # fmt: skip
    meta = json.loads((path / "meta.json").read_text())
    assert meta["offrl_format"] == "memmap" and meta["format_version"] == FORMAT_VERSION and meta["length"] == 300

    back = load_dataset(path)
    assert_same(back, original)
    assert isinstance(back.observations["image"], np.memmap) and not back.observations["image"].flags.writeable
    assert memmap.is_memory_mapped(back.actions) and memmap.is_memory_mapped(back.rewards)
    assert back.metadata == {"env_id": "Fake-v0", "frame_skip": 4, "format": "offrl-memmap"}
    assert back.num_episodes == original.num_episodes

    in_memory = load_dataset(path, mmap=False)
    assert_same(in_memory, original)
    assert not memmap.is_memory_mapped(in_memory.observations["image"])


def test_vector_round_trip_and_copy_of_a_memory_mapped_dataset(tmp_path):
    original = random_dataset(n=1000, low=-2.0, high=3.0)
    first = load_dataset(save_dataset(original, tmp_path / "a.offrl"))
    # memmap -> memmap and memmap -> npz: chunked copies of the mapped columns
    assert_same(load_dataset(save_dataset(first, tmp_path / "b.offrl")), original)
    assert_same(load_dataset(save_dataset(first, tmp_path / "b.npz")), original)


def test_cli_converts_to_memmap(tmp_path, capsys):
    source = save_dataset(random_dataset(), tmp_path / "d.hdf5")
    assert cli.main(["datasets", "convert", str(source), str(tmp_path / "d.offrl")]) == 0
    assert "500 transitions" in capsys.readouterr().out
    assert_same(load_dataset(tmp_path / "d.offrl"), load_dataset(source))
    assert cli.main(["datasets", "info", str(tmp_path / "d.offrl")]) == 0
    assert "memory-mapped" in capsys.readouterr().out


def test_refuses_to_overwrite_and_leaves_nothing_behind_on_error(tmp_path):
    path = save_dataset(random_dataset(), tmp_path / "d.offrl")
    before = {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}
    with pytest.raises(DatasetError, match="already exists"):
        save_dataset(random_dataset(seed=1), path)
    with pytest.raises(DatasetError, match="already exists"):
        MemmapWriter(path)
    assert {p: p.read_bytes() for p in path.rglob("*") if p.is_file()} == before

    # an error while writing: no target directory and no temporary directory are left
    target = tmp_path / "broken.offrl"
    with pytest.raises(RuntimeError, match="converter failed"):
        with MemmapWriter(target, capacity=4) as writer:
            part = random_dataset(n=10)
            writer.append(
                observations=part.observations, actions=part.actions, rewards=part.rewards,
                next_observations=part.next_observations, terminals=part.terminals, timeouts=part.timeouts,
            )  # fmt: skip
            raise RuntimeError("converter failed")
    # closing with a column never written fails the same way
    with pytest.raises(ValueError, match="nothing was written to next_observations"):
        with MemmapWriter(target) as writer:
            writer.put("observations", slice(0, 2), np.zeros((2, 3), np.float32))
            writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.offrl"]

    # overwrite=True replaces the directory in one rename
    save_dataset(random_dataset(n=100), path, overwrite=True)
    assert len(load_dataset(path)) == 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.offrl"]

    # ... but only a dataset offrl wrote: a user's directory (or the converter's own source) is never replaced
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(DatasetError, match="is not an offrl-memmap dataset: offrl replaces only its own"):
        save_dataset(random_dataset(), mine, format="offrl-memmap", overwrite=True)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_sigterm_stops_a_conversion_like_ctrl_c_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    import os
    import signal

    source = save_dataset(random_dataset(), tmp_path / "d.hdf5")
    original = MemmapWriter.append

    def killed(self, **columns):
        original(self, **columns)
        os.kill(os.getpid(), signal.SIGTERM)  # as `kill` or `timeout` sends it

    monkeypatch.setattr(MemmapWriter, "append", killed)
    assert cli.main(["datasets", "convert", str(source), str(tmp_path / "d.offrl")]) == 130
    assert "stopped" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.hdf5"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_writer_grows_and_writes_rows_where_they_belong(tmp_path):
    original = image_dataset(n=250)
    with MemmapWriter(tmp_path / "grown.offrl", capacity=7) as writer:
        for start in range(0, 250, 33):
            part = original.take(slice(start, start + 33))
            writer.append(
                observations=part.observations, actions=part.actions, rewards=part.rewards,
                next_observations=part.next_observations, terminals=part.terminals, timeouts=part.timeouts,
                infos=part.infos,
            )  # fmt: skip
        path = writer.close(action_space=gym.spaces.Discrete(6), metadata=original.metadata)
    assert_same(load_dataset(path), original)
    assert np.load(path / "actions.npy", mmap_mode="r").shape == (250,)  # trimmed to the rows written

    # put: rows written in any order (a ring buffer's converter); spaces inferred at close
    rows = np.random.default_rng(0).permutation(250)
    with MemmapWriter(tmp_path / "shuffled.offrl", capacity=250) as writer:
        for start in range(0, 250, 64):
            chunk = rows[start : start + 64]
            for name in ("actions", "rewards", "terminals", "timeouts"):
                writer.put(name, chunk, getattr(original, name)[chunk])
            for key in ("image", "state"):
                writer.put(f"observations/{key}", chunk, original.observations[key][chunk])
                writer.put(f"next_observations/{key}", chunk, original.next_observations[key][chunk])
            writer.put("infos/lives", chunk, original.infos["lives"][chunk])
        path = writer.close()
    back = load_dataset(path)
    assert_same(back, original)


def test_errors_name_the_file(tmp_path):
    def fresh(name):
        return save_dataset(random_dataset(), tmp_path / name)

    path = fresh("missing.offrl")
    (path / "rewards.npy").unlink()
    with pytest.raises(DatasetError, match="missing column file") as error:
        load_dataset(path)
    assert error.value.source == str(path / "rewards.npy") and error.value.key == "rewards"

    path = fresh("short.offrl")
    np.save(path / "actions.npy", np.zeros((499, 2), np.float32))
    with pytest.raises(DatasetError, match="has 499 rows, meta.json says the dataset has 500") as error:
        load_dataset(path)
    assert error.value.source == str(path / "actions.npy")

    path = fresh("truncated.offrl")
    data = (path / "observations.npy").read_bytes()
    (path / "observations.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="truncated or corrupt") as error:
        load_dataset(path)
    assert error.value.source == str(path / "observations.npy")

    path = fresh("newer.offrl")
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps({**meta, "format_version": FORMAT_VERSION + 1}))
    assert detect_format(path) == "offrl-memmap"
    with pytest.raises(DatasetError, match="newer offrl") as error:
        load_dataset(path)
    assert error.value.source == str(path / "meta.json")

    path = fresh("nan.offrl")
    rewards = np.load(path / "rewards.npy")
    rewards[321] = np.nan
    np.save(path / "rewards.npy", rewards)
    with pytest.raises(DatasetError, match=r"NaN values in 1 rows \(first at row 321\)"):
        load_dataset(path)

    (tmp_path / "plain").mkdir()
    with pytest.raises(DatasetError, match="neither an offrl-memmap dataset"):
        detect_format(tmp_path / "plain")


def test_device_tensors_share_the_file_and_are_not_packed(tmp_path):
    original = random_dataset(n=400)
    back = load_dataset(save_dataset(original, tmp_path / "d.offrl"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "non-writable array" warning
        data = back.to("cpu")
    # the tensor reads the mapped pages: no copy was made
    assert data.observations.data_ptr() == back.observations.__array_interface__["data"][0]
    assert memmap.is_file_backed(data.observations) and memmap.is_file_backed(data.observations[10:])
    assert not memmap.is_file_backed(original.to("cpu").observations)

    sampler = UniformSampler(data, 64, seed=3)
    assert sampler._packed is None  # packing would copy the whole file into memory
    in_memory = UniformSampler(original.to("cpu"), 64, seed=3)
    assert in_memory._packed is not None  # the in-memory path is unchanged
    for _ in range(3):
        mapped, packed = sampler.sample(), in_memory.sample()  # same seed, same rows
        for name in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts"):
            torch.testing.assert_close(getattr(mapped, name), getattr(packed, name))


def test_chunked_validation_and_statistics_match_whole_array_results(monkeypatch):
    dataset = random_dataset(n=1000, obs_dim=5)
    whole = dataset.observation_stats(eps=1e-3)
    np.testing.assert_array_equal(whole[0], dataset.observations.mean(0, dtype=np.float64).astype(np.float32))
    monkeypatch.setattr(memmap, "CHUNK_ELEMENTS", 64)  # 12 rows a chunk
    chunked = dataset.observation_stats(eps=1e-3)
    np.testing.assert_allclose(chunked[0], whole[0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(chunked[1], whole[1], rtol=1e-6)

    observations = dataset.observations.copy()
    observations[[500, 700, 701]] = [np.inf, 0, 0, 0, 0]
    observations[900, 2] = np.nan
    with pytest.raises(DatasetError, match=r"\[observations\]: contains NaN values in 4 rows \(first at row 500\)"):
        Dataset(**{**_fields(dataset), "observations": observations})
    actions = dataset.actions.copy()
    actions[[37, 802]] = 5.0
    with pytest.raises(DatasetError, match=r"2 actions are outside the action bounds .* \(first at row 37"):
        Dataset(**{**_fields(dataset), "actions": actions})
    flags = dataset.terminals.astype(np.float32)
    flags[640] = 2.0
    with pytest.raises(DatasetError, match=r"flags must be 0 or 1, found \[2.0\]"):
        Dataset(**{**_fields(dataset), "terminals": flags})


def _fields(dataset: Dataset) -> dict:
    names = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts", "action_space")
    return {name: getattr(dataset, name) for name in names}


# A dataset several times larger than the memory the process may allocate: RLIMIT_DATA counts
# private memory (heap, anonymous mappings), not read-only shared file mappings.
OBS_DIM, ROWS, HEADROOM_MB = 4096, 45_000, 128  # 2 x 737 MB of float32 observations

LIMITED = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np, torch
    torch.set_num_threads(1)
    from offrl.algos.registry import make_algo
    from offrl.data import UniformSampler, load_dataset, memmap
    from offrl.data.formats import offrl_memmap
    from tests.conftest import random_dataset

    path, headroom = sys.argv[1], int(sys.argv[2]) * 2**20
    # warm up what allocates once (allocator arenas, autograd, optimizer code paths) before measuring
    small = random_dataset(n=300)
    algo = make_algo("bc", small.observation_space, small.action_space, seed=0)
    algo.update(UniformSampler(small.to("cpu"), 32).sample())

    def private_bytes():
        for line in open("/proc/self/status"):
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024

    baseline = private_bytes()
    limit = baseline + headroom
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))

    try:
        offrl_memmap.read(path, mmap=False)
        loaded_in_memory = True
    except MemoryError:
        loaded_in_memory = False

    dataset = load_dataset(path)
    observations_on_disk = np.load(f"{path}/observations.npy", mmap_mode="r")
    next_on_disk = np.load(f"{path}/next_observations.npy", mmap_mode="r")
    mean, std = dataset.observation_stats(eps=1e-3)
    data = dataset.to("cpu")
    sampler = UniformSampler(data, 256, seed=0)
    algo = make_algo("bc", dataset.observation_space, dataset.action_space, seed=0)
    algo.encoder.set_statistics(mean, std)
    losses, checked = [], 0
    for step in range(5):
        batch = sampler.sample()
        assert batch.observations.shape == (256, dataset.observation_space.shape[0])
        rows = batch.rewards.numpy().astype(np.int64)  # each row's reward is its row number
        assert np.array_equal(batch.observations.numpy(), observations_on_disk[rows])
        assert np.array_equal(batch.next_observations.numpy(), next_on_disk[rows])
        checked += len(rows)
        losses.append(float(algo.update(batch)["bc_loss"]))
    print(json.dumps({
        "limit_mb": limit / 2**20, "baseline_mb": baseline / 2**20, "dataset_mb": dataset.summary()["memory_mb"],
        "loaded_in_memory": loaded_in_memory, "file_backed": memmap.is_file_backed(data.observations),
        "packed": sampler._packed is not None, "checked_rows": checked, "losses": losses,
        "mean_error": float(np.abs(mean[:8] - observations_on_disk[:, :8].mean(0)).max()),
        "final_private_mb": private_bytes() / 2**20,
    }))
    """
)


def test_larger_than_memory_dataset_trains_under_a_memory_limit(tmp_path):
    path = tmp_path / "big.offrl"
    features = np.arange(OBS_DIM, dtype=np.float32) / OBS_DIM
    with MemmapWriter(path, capacity=ROWS) as writer:
        for start in range(0, ROWS, 2000):
            rows = np.arange(start, min(start + 2000, ROWS))
            observations = np.sin(rows[:, None] * 0.01 + features).astype(np.float32)
            writer.append(
                observations=observations,
                actions=np.tanh(observations[:, :3]),
                rewards=rows.astype(np.float32),
                next_observations=observations + 0.5,
                terminals=np.zeros(len(rows), bool),
                timeouts=(rows % 1000) == 999,
            )
        writer.close(metadata={"purpose": "memory-limit test"})
    on_disk = sum(p.stat().st_size for p in path.rglob("*.npy"))
    assert on_disk > 2 * ROWS * OBS_DIM * 4

    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    result = subprocess.run(
        [sys.executable, "-c", LIMITED, str(path), str(HEADROOM_MB)], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert on_disk > 3 * report["limit_mb"] * 2**20  # the data is several times what the process may hold
    assert report["loaded_in_memory"] is False  # reading it into memory fails under the limit ...
    assert report["file_backed"] and not report["packed"]  # ... sampling memory-mapped works
    assert report["checked_rows"] == 5 * 256
    assert all(np.isfinite(report["losses"])) and report["mean_error"] < 1e-4
    assert report["final_private_mb"] <= report["limit_mb"]
