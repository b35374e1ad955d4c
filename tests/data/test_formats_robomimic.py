"""robomimic's demonstration layout, written here with h5py the way robomimic's scripts write it."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

import offrl
from offrl.cli import main
from offrl.data import detect_format, load_dataset, save_dataset
from offrl.data.formats import robomimic
from offrl.errors import DatasetError
from tests.conftest import random_dataset

# demo name -> (rows, last dones flag); written in this order, so h5py lists demo_10 before demo_2
DEMOS = {"demo_10": (4, 0), "demo_0": (5, 1), "demo_2": (6, 1), "demo_1": (3, 0)}
ORDER = ["demo_0", "demo_1", "demo_2", "demo_10"]  # robomimic's order: by number
ENV_ARGS = {"env_name": "Lift", "type": 1, "env_kwargs": {"has_renderer": False, "control_freq": 20}}
MASKS = {"train": ["demo_0", "demo_2", "demo_10"], "valid": ["demo_1"]}


def demo_arrays(name: str, rows: int, last_done: int) -> dict[str, np.ndarray]:
    """Values that say where they come from: demo number and row."""
    number, t = int(name.split("_")[1]), np.arange(rows, dtype=np.float64)
    eef = np.stack([np.full(rows, number, np.float64), t, t * 0.5], axis=1)
    image = ((number * 16 + t[:, None, None, None] + np.zeros((1, 8, 8, 3))) % 256).astype(np.uint8)
    dones = np.zeros(rows, np.int64)
    dones[-1] = last_done
    if rows > 4:
        dones[1] = 1  # robomimic marks task success inside a demo too: it must not end the episode
    return {
        "obs/robot0_eef_pos": eef,
        "obs/object": np.tile(np.arange(10, dtype=np.float64), (rows, 1)) + number,
        "obs/agentview_image": image,
        "next_obs/robot0_eef_pos": eef + 100.0,
        "next_obs/object": np.tile(np.arange(10, dtype=np.float64), (rows, 1)) + number + 100.0,
        "next_obs/agentview_image": image + 1,
        "actions": np.tanh(np.stack([t + number] * 7, axis=1) / 10.0),
        "rewards": t + number * 10.0,
        "dones": dones,
        "states": np.tile(t[:, None], (1, 12)) + number,
    }


def write_robomimic(path, *, next_obs: bool = True, demos: dict = DEMOS) -> None:
    """The layout of robomimic's dataset_states_to_obs.py output: data/demo_N/{obs,next_obs,...}, mask/*."""
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        total = 0
        for name, (rows, last_done) in demos.items():
            group = data.create_group(name)
            for key, value in demo_arrays(name, rows, last_done).items():
                if next_obs or not key.startswith("next_obs/"):
                    group.create_dataset(key, data=value)
            group.attrs["num_samples"] = rows
            group.attrs["model_file"] = "<mujoco model='lift'/>"
            total += rows
        data.attrs["total"] = total
        data.attrs["env_args"] = json.dumps(ENV_ARGS, indent=4)
        for key, names in MASKS.items():
            f.create_dataset(f"mask/{key}", data=np.array(names, dtype="S"))


def expected(key: str) -> np.ndarray:
    return np.concatenate([demo_arrays(name, *DEMOS[name])[key] for name in ORDER])


@pytest.fixture
def demos_file(tmp_path):
    path = tmp_path / "demos.hdf5"
    write_robomimic(path)
    return path


def test_reads_every_key_in_demo_order(demos_file):
    assert detect_format(demos_file) == "robomimic"
    ds = load_dataset(demos_file)
    assert ds.metadata["format"] == "robomimic" and len(ds) == 18
    assert ds.metadata["demos"] == ORDER  # demo_2 before demo_10
    assert sorted(ds.observations) == ["agentview_image", "object", "robot0_eef_pos"]
    shapes = {key: (a.shape, a.dtype) for key, a in ds.observations.items()}
    assert shapes == {
        "robot0_eef_pos": ((18, 3), np.float32),
        "object": ((18, 10), np.float32),
        "agentview_image": ((18, 8, 8, 3), np.uint8),
    }
    for key in ("robot0_eef_pos", "object", "agentview_image"):
        np.testing.assert_array_equal(ds.observations[key], expected(f"obs/{key}").astype(ds.observations[key].dtype))
        np.testing.assert_array_equal(
            ds.next_observations[key], expected(f"next_obs/{key}").astype(ds.next_observations[key].dtype)
        )
    np.testing.assert_allclose(ds.actions, expected("actions"), rtol=1e-6)
    assert ds.actions.dtype == np.float32 and ds.rewards.dtype == np.float32
    np.testing.assert_array_equal(ds.rewards, expected("rewards"))
    assert ds.infos["states"].shape == (18, 12) and ds.infos["states"].dtype == np.float64
    np.testing.assert_array_equal(ds.infos["states"], expected("states"))
    space = ds.observation_space
    assert space["agentview_image"].dtype == np.uint8 and space["agentview_image"].high.max() == 255
    assert space["robot0_eef_pos"].dtype == np.float32 and space["robot0_eef_pos"].shape == (3,)
    assert ds.metadata["env_args"] == ENV_ARGS and ds.metadata["env_name"] == "Lift"
    assert "next_observations" not in ds.metadata


def test_each_demo_is_one_episode_ending_in_a_terminal_or_a_timeout(demos_file):
    ds = load_dataset(demos_file)
    starts, stops = ds.episode_bounds
    assert starts.tolist() == [0, 5, 8, 14] and stops.tolist() == [5, 8, 14, 18]
    assert ds.num_episodes == 4  # the dones inside demo_0 and demo_2 do not split them
    assert [ds.episode(i).terminated for i in range(4)] == [True, False, True, False]
    assert [ds.episode(i).truncated for i in range(4)] == [False, True, False, True]
    assert ds.terminals.sum() == 2 and ds.timeouts.sum() == 2
    np.testing.assert_array_equal(ds.infos["dones"], expected("dones").astype(bool))
    assert ds.infos["dones"].sum() == 4  # the raw flags, inside demos too


def test_filter_keys_name_episode_indices(demos_file):
    ds = load_dataset(demos_file)
    assert ds.metadata["filter_keys"] == {"train": [0, 2, 3], "valid": [1]}
    valid = ds.filter_key("valid")
    assert len(valid) == 3 and valid.metadata["demos"] == ["demo_1"]
    assert valid.metadata["filter_keys"] == {"train": [], "valid": [0]}
    train = ds.filter_key("train")
    assert train.metadata["demos"] == ["demo_0", "demo_2", "demo_10"] and train.episode_lengths().tolist() == [5, 6, 4]
    with pytest.raises(DatasetError, match=r"no filter key 'test' \(known: train, valid\)") as error:
        ds.filter_key("test")
    assert str(demos_file) in str(error.value)
    reordered = ds.subset([3, 1])  # any subset keeps filter keys and demo names in step with its episodes
    assert reordered.metadata["filter_keys"] == {"train": [0], "valid": [1]}
    assert reordered.metadata["demos"] == ["demo_10", "demo_1"]


def test_reading_one_filter_key(demos_file):
    ds = robomimic.read(demos_file, filter_key="valid")
    assert ds.metadata["demos"] == ["demo_1"] and len(ds) == 3 and ds.num_episodes == 1
    np.testing.assert_array_equal(ds.rewards, demo_arrays("demo_1", 3, 0)["rewards"])
    assert ds.metadata["filter_keys"] == {"train": [], "valid": [0]}
    train = robomimic.read(demos_file, filter_key="train")
    assert train.metadata["demos"] == ["demo_0", "demo_2", "demo_10"]
    assert train.metadata["filter_keys"]["train"] == [0, 1, 2]
    with pytest.raises(DatasetError, match=r"no filter key '20_percent' in mask/ \(known: train, valid\)"):
        robomimic.read(demos_file, filter_key="20_percent")


def test_without_next_obs_the_next_row_stands_in(tmp_path):
    path = tmp_path / "image.hdf5"
    write_robomimic(path, next_obs=False)
    ds = load_dataset(path)
    assert ds.metadata["next_observations"] == "derived"
    obs = expected("obs/robot0_eef_pos").astype(np.float32)
    last = np.array([4, 7, 13, 17])
    inside = np.setdiff1d(np.arange(18), last)
    np.testing.assert_array_equal(ds.next_observations["robot0_eef_pos"][inside], obs[inside + 1])
    np.testing.assert_array_equal(ds.next_observations["robot0_eef_pos"][last], obs[last])
    np.testing.assert_array_equal(ds.next_observations["agentview_image"][last], ds.observations["agentview_image"][last])


def test_states_only_when_every_demo_has_them(demos_file):
    corrupt(demos_file, lambda f: f.__delitem__("data/demo_2/states"))
    ds = load_dataset(demos_file)
    assert "states" not in ds.infos and len(ds) == 18


def test_round_trip_through_the_writer(demos_file, tmp_path):
    ds = load_dataset(demos_file)
    out = save_dataset(ds, tmp_path / "copy.hdf5", format="robomimic")
    again = load_dataset(out)
    assert again.metadata["format"] == "robomimic"
    for key in ds.observations:
        np.testing.assert_array_equal(again.observations[key], ds.observations[key])
        np.testing.assert_array_equal(again.next_observations[key], ds.next_observations[key])
    for name in ("actions", "rewards", "terminals", "timeouts"):
        np.testing.assert_array_equal(getattr(again, name), getattr(ds, name))
    np.testing.assert_array_equal(again.infos["dones"], ds.infos["dones"])
    np.testing.assert_array_equal(again.infos["states"], ds.infos["states"])
    assert again.metadata["filter_keys"] == ds.metadata["filter_keys"]
    assert again.metadata["env_args"] == ENV_ARGS
    assert again.metadata["demos"] == ["demo_0", "demo_1", "demo_2", "demo_3"]  # renumbered in order
    assert again.action_space == ds.action_space


def test_the_writer_writes_robomimics_layout(demos_file, tmp_path):
    ds = load_dataset(demos_file)
    out = tmp_path / "written.hdf5"
    robomimic.write(ds, out, env_args={"env_name": "PickPlaceCan", "type": 1, "env_kwargs": {}})
    with h5py.File(out, "r") as f:
        assert set(f) == {"data", "mask"}
        data = f["data"]
        assert sorted(n for n in data if n.startswith("demo_")) == ["demo_0", "demo_1", "demo_2", "demo_3"]
        assert int(data.attrs["total"]) == 18
        assert json.loads(data.attrs["env_args"]) == {"env_name": "PickPlaceCan", "type": 1, "env_kwargs": {}}
        demo = data["demo_2"]  # the file's demo_2, third in order
        assert int(demo.attrs["num_samples"]) == 6
        assert set(demo) == {"obs", "next_obs", "actions", "rewards", "dones", "states"}
        assert set(demo["obs"]) == set(demo["next_obs"]) == {"agentview_image", "object", "robot0_eef_pos"}
        assert demo["obs/agentview_image"].shape == (6, 8, 8, 3) and demo["obs/agentview_image"].dtype == np.uint8
        assert demo["obs/robot0_eef_pos"].shape == (6, 3) and demo["actions"].shape == (6, 7)
        assert demo["rewards"].shape == (6,) and demo["states"].shape == (6, 12)
        assert demo["dones"].dtype.kind == "i"
        np.testing.assert_array_equal(demo["dones"][()], [0, 1, 0, 0, 0, 1])  # raw flags kept
        np.testing.assert_array_equal(data["demo_3/dones"][()], [0, 0, 0, 0])  # a timeout
        np.testing.assert_array_equal(demo["obs/robot0_eef_pos"][()], demo_arrays("demo_2", 6, 1)["obs/robot0_eef_pos"])
        assert [n.decode() for n in f["mask/train"][()]] == ["demo_0", "demo_2", "demo_3"]
        assert [n.decode() for n in f["mask/valid"][()]] == ["demo_1"]
        assert f["mask/train"].dtype.kind == "S"


def test_array_observations_are_written_under_flat(tmp_path):
    ds = random_dataset(n=120, episode_length=40)
    ds.metadata["env_name"] = "Toy-v0"
    out = save_dataset(ds, tmp_path / "toy.hdf5", format="robomimic")
    with h5py.File(out, "r") as f:
        assert set(f["data/demo_0/obs"]) == {"flat"} and f["data/demo_0/obs/flat"].shape == (40, 4)
        assert json.loads(f["data"].attrs["env_args"]) == {"env_name": "Toy-v0", "type": 1, "env_kwargs": {}}
        assert "mask" not in f
    again = load_dataset(out)  # offrl's own file: the array and its space come back, so the env it came from fits
    np.testing.assert_array_equal(again.observations, ds.observations)
    np.testing.assert_array_equal(again.next_observations, ds.next_observations)
    np.testing.assert_array_equal(again.timeouts, ds.timeouts)
    np.testing.assert_array_equal(again.terminals, ds.terminals)
    assert again.observation_space == ds.observation_space and again.action_space == ds.action_space
    with h5py.File(out, "r+") as f:  # as robomimic's own tools write it: no offrl space attributes
        del f["data"].attrs["offrl_observation_space"]
    np.testing.assert_array_equal(load_dataset(out).observations["flat"], ds.observations)


def corrupt(path, edit) -> None:
    with h5py.File(path, "r+") as f:
        edit(f)


def replace(f, key: str, value: np.ndarray) -> None:
    del f[key]
    f.create_dataset(key, data=value)


MALFORMED = {
    "num_samples": (
        lambda f: f["data/demo_2"].attrs.__setitem__("num_samples", 9),
        ["data/demo_2", "num_samples is 9 but actions has 6 rows"],
    ),
    "missing actions": (lambda f: f.__delitem__("data/demo_1/actions"), ["data/demo_1/actions", "missing"]),
    "obs keys differ": (
        lambda f: f["data/demo_10/obs"].move("object", "cube_pos"),
        ["data/demo_10/obs", "differ from demo_0's", "lacks object", "adds cube_pos"],
    ),
    "key lengths differ": (
        lambda f: replace(f, "data/demo_2/obs/robot0_eef_pos", np.zeros((5, 3))),
        ["data/demo_2/obs/robot0_eef_pos", "has 5 rows but actions has 6"],
    ),
    "mask names a missing demo": (
        lambda f: replace(f, "mask/valid", np.array([b"demo_1", b"demo_7"])),
        ["mask/valid", "demo_7"],
    ),
    "NaN": (
        lambda f: f["data/demo_2/obs/object"].__setitem__((3, 4), np.nan),
        ["data/demo_2/obs/object", "NaN", "demo_2, its row 3"],
    ),
    "raw simulator states, no observations": (
        lambda f: f.__delitem__("data/demo_0/obs"),
        ["data/demo_0/obs", "missing required group", "dataset_states_to_obs.py"],
    ),
    "dones not 0/1": (
        lambda f: replace(f, "data/demo_1/dones", np.array([0, 2, 0])),
        ["data/demo_1/dones", "flags must be 0 or 1"],
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_files_name_the_file_demo_and_key(case, demos_file):
    edit, fragments = MALFORMED[case]
    corrupt(demos_file, edit)
    with pytest.raises(DatasetError) as error:
        load_dataset(demos_file)
    message = str(error.value)
    for fragment in [str(demos_file), *fragments]:
        assert fragment in message, message


def test_datasets_info(demos_file, capsys):
    assert main(["datasets", "info", str(demos_file)]) == 0
    text = capsys.readouterr().out
    assert "format       robomimic" in text and "episodes     4  (terminals 2, timeouts 2)" in text
    assert "demos        4" in text and "env name     Lift" in text
    assert "length       mean 4.5  min 3  max 6" in text
    assert "obs keys     agentview_image  (8, 8, 3) uint8" in text
    assert "robot0_eef_pos   (3,) float32" in text and "object           (10,) float32" in text
    assert "filter keys  train (3 demos), valid (1 demo)" in text
    assert "demo_10" not in text  # no demo list in text mode
    assert main(["datasets", "info", str(demos_file), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["robomimic"]["demos"] == 4 and summary["robomimic"]["filter_keys"] == {"train": 3, "valid": 1}
    assert summary["robomimic"]["obs_keys"]["agentview_image"] == {"shape": [8, 8, 3], "dtype": "uint8"}
    assert summary["metadata"]["env_name"] == "Lift"


def test_datasets_convert_both_ways(demos_file, tmp_path, capsys):
    offrl_file, back = tmp_path / "demos-offrl.hdf5", tmp_path / "back.hdf5"
    assert main(["datasets", "convert", str(demos_file), str(offrl_file)]) == 0
    assert detect_format(offrl_file) == "offrl-hdf5"
    assert main(["datasets", "convert", str(offrl_file), str(back), "--format", "robomimic"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert detect_format(back) == "robomimic"
    original, converted = load_dataset(demos_file), load_dataset(back)
    for key in original.observations:
        np.testing.assert_array_equal(converted.observations[key], original.observations[key])
    np.testing.assert_array_equal(converted.timeouts, original.timeouts)
    np.testing.assert_array_equal(converted.infos["dones"], original.infos["dones"])
    assert converted.metadata["filter_keys"] == original.metadata["filter_keys"]
    assert converted.metadata["env_args"] == ENV_ARGS
    assert main(["datasets", "convert", str(demos_file), str(tmp_path / "x.hdf5"), "--format", "hdf4"]) == 2
    assert "not 'hdf4'" in capsys.readouterr().err


def test_bc_trains_on_a_robomimic_image_file(demos_file, tmp_path):
    ds = load_dataset(demos_file).filter_key("train")
    algo = offrl.make_algo(
        "bc", ds.observation_space, ds.action_space, hidden_dims=(32,), batch_size=8, encoder_features=16, channels_last=True
    )
    result = offrl.train_offline(algo, ds, steps=3, run_dir=tmp_path / "run", progress=False, tensorboard=False, log_every=1)
    assert algo.num_updates == 3 and result is not None
    assert any(isinstance(m, torch.nn.Conv2d) for m in algo.modules())
    observations = {key: column[:2] for key, column in ds.to("cpu").observations.items()}
    assert algo.act(observations).shape == (2, 7)
