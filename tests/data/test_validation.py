"""Every malformed input gets one clear DatasetError naming the file and the key."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from offrl.data import load_dataset, save_dataset
from offrl.errors import DatasetError


def d4rl_columns(n: int = 20) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "observations": rng.normal(size=(n, 3)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(n, 2)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "terminals": np.zeros(n, bool),
        "timeouts": (np.arange(n) % 10 == 9),
    }


def write(path, columns: dict[str, np.ndarray]) -> None:
    with h5py.File(path, "w") as f:
        for key, value in columns.items():
            f.create_dataset(key, data=value)


def load_error(path) -> str:
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    return str(info.value)


def test_valid_file_loads(tmp_path):
    write(tmp_path / "ok.hdf5", d4rl_columns())
    assert len(load_dataset(tmp_path / "ok.hdf5")) == 18


def test_mismatched_lengths(tmp_path):
    columns = d4rl_columns()
    columns["rewards"] = columns["rewards"][:-1]
    write(tmp_path / "bad.hdf5", columns)
    message = load_error(tmp_path / "bad.hdf5")
    assert "bad.hdf5" in message and "[rewards]" in message and "19 rows" in message and "20" in message


def test_wrong_dtype(tmp_path):
    columns = d4rl_columns()
    columns["rewards"] = np.array([b"x"] * 20)
    write(tmp_path / "bad.hdf5", columns)
    message = load_error(tmp_path / "bad.hdf5")
    assert "[rewards]" in message and "dtype" in message


def test_flags_that_are_not_zero_or_one(tmp_path):
    columns = d4rl_columns()
    columns["terminals"] = np.full(20, 0.5, np.float32)
    write(tmp_path / "bad.hdf5", columns)
    message = load_error(tmp_path / "bad.hdf5")
    assert "[terminals]" in message and "0 or 1" in message


@pytest.mark.parametrize("value, word", [(np.nan, "NaN"), (np.inf, "Inf")])
@pytest.mark.parametrize("key", ["observations", "actions", "rewards"])
def test_nan_and_inf(tmp_path, key, value, word):
    columns = d4rl_columns()
    columns[key] = columns[key].copy()
    columns[key][5] = value
    write(tmp_path / "bad.hdf5", columns)
    message = load_error(tmp_path / "bad.hdf5")
    assert f"[{key}]" in message and word in message and "row 5" in message


def test_actions_outside_bounds(tmp_path, pendulum_dataset):
    path = save_dataset(pendulum_dataset, tmp_path / "p.hdf5")
    with h5py.File(path, "r+") as f:
        actions = f["actions"][()]
        actions[7, 0] = 3.5  # Pendulum's torque is in [-2, 2]
        f["actions"][...] = actions
    message = load_error(path)
    assert "[actions]" in message and "outside the action bounds" in message and "row 7" in message


def test_terminal_and_timeout_on_one_step(tmp_path):
    columns = d4rl_columns()
    columns["terminals"][9] = True  # row 9 is also a timeout
    write(tmp_path / "bad.hdf5", columns)
    message = load_error(tmp_path / "bad.hdf5")
    assert "terminal and timeout are both set" in message and "row 9" in message


def test_empty_dataset(tmp_path):
    write(tmp_path / "empty.hdf5", {k: v[:0] for k, v in d4rl_columns().items()})
    assert "empty" in load_error(tmp_path / "empty.hdf5")


def test_missing_key(tmp_path):
    columns = d4rl_columns()
    del columns["rewards"]
    write(tmp_path / "bad.hdf5", columns)
    message = load_error(tmp_path / "bad.hdf5")
    assert "[rewards]" in message and "missing" in message


def test_truncated_file(tmp_path):
    write(tmp_path / "full.hdf5", d4rl_columns(5000))
    data = (tmp_path / "full.hdf5").read_bytes()
    (tmp_path / "cut.hdf5").write_bytes(data[: len(data) // 2])
    message = load_error(tmp_path / "cut.hdf5")
    assert "cut.hdf5" in message and "truncated or corrupt" in message


def test_corrupt_file(tmp_path):
    (tmp_path / "noise.hdf5").write_bytes(np.random.default_rng(0).bytes(4096))
    message = load_error(tmp_path / "noise.hdf5")
    assert "noise.hdf5" in message and "truncated or corrupt" in message


def test_missing_file(tmp_path):
    message = load_error(tmp_path / "nowhere.hdf5")
    assert "nowhere.hdf5" in message and "no such file" in message


def test_unknown_layout(tmp_path):
    write(tmp_path / "other.hdf5", {"x": np.zeros(3)})
    message = load_error(tmp_path / "other.hdf5")
    assert "no layout offrl reads" in message and "x" in message


def test_npz_with_pickled_objects_is_refused(tmp_path):
    columns = d4rl_columns()
    np.savez(tmp_path / "p.npz", **columns, extra=np.array([{"a": 1}], dtype=object))
    assert "pickled" in load_error(tmp_path / "p.npz")


def test_truncated_npz(tmp_path, pendulum_dataset):
    path = save_dataset(pendulum_dataset, tmp_path / "p.npz")
    data = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 3])
    assert "truncated or corrupt" in load_error(tmp_path / "cut.npz")


def test_newer_format_version(tmp_path, pendulum_dataset):
    path = save_dataset(pendulum_dataset, tmp_path / "p.hdf5")
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 99
    assert "newer offrl" in load_error(path)


def test_observation_shape_against_space(tmp_path, pendulum_dataset):
    path = save_dataset(pendulum_dataset, tmp_path / "p.hdf5")
    with h5py.File(path, "r+") as f:
        obs = f["observations"][()]
        del f["observations"]
        f.create_dataset("observations", data=np.concatenate([obs, obs[:, :1]], axis=1))
    message = load_error(path)
    assert "[observations]" in message and "(4,)" in message and "(3,)" in message


def test_integer_actions_with_several_columns_are_refused(tmp_path):
    columns = d4rl_columns()
    columns["actions"] = np.random.default_rng(0).integers(0, 3, size=(20, 2))
    write(tmp_path / "multi.hdf5", columns)
    message = load_error(tmp_path / "multi.hdf5")
    assert "multi.hdf5 [actions]" in message and "one integer per row" in message and "(2,) per row" in message


def test_an_npy_array_under_an_npz_name(tmp_path):
    with open(tmp_path / "array.npz", "wb") as handle:
        np.save(handle, np.zeros((5, 3)))
    message = load_error(tmp_path / "array.npz")
    assert "array.npz" in message and "one .npy array, not an .npz archive" in message


@pytest.mark.parametrize("content", [b"", b"hello\n"])
def test_an_npz_that_is_no_zip_archive(tmp_path, content):
    (tmp_path / "broken.npz").write_bytes(content)
    message = load_error(tmp_path / "broken.npz")
    assert "broken.npz" in message and "not an npz archive" in message and "pickled" not in message


def test_a_damaged_memmap_header_is_named(tmp_path, pendulum_dataset):
    path = save_dataset(pendulum_dataset, tmp_path / "p.offrl")
    (path / "meta.json").write_text('{"offrl_format": "memmap", "format_version": 1,')
    message = load_error(path)
    assert "meta.json" in message and "cannot be parsed as JSON" in message


@pytest.mark.parametrize("key", ["observations", "actions", "rewards"])
def test_float64_values_beyond_float32_are_refused(tmp_path, key):
    columns = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in d4rl_columns().items()}
    columns[key] = columns[key] * 1e39  # finite in float64, Inf once cast to float32
    write(tmp_path / "huge.hdf5", columns)
    message = load_error(tmp_path / "huge.hdf5")
    assert f"huge.hdf5 [{key}]" in message and "beyond the float32 range" in message
