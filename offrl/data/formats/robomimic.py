"""robomimic's HDF5 demonstrations, read and written with h5py (robomimic itself is not needed).

    data                      attrs: total (rows over all demos), env_args (JSON)
    data/demo_N               attrs: num_samples (rows), model_file (optional, not read)
        obs/<key>             [T, ...]: low-dim float64, images uint8 [T, H, W, C]
        next_obs/<key>        same keys; absent in some files (derived, see below)
        actions [T, A], rewards [T], dones [T] (0/1), states [T, S] (optional)
    mask/<filter_key>         byte strings naming demos (train, valid, 20_percent, ...)

Each demo is one episode, demos ordered by N as a number (demo_10 after demo_9).
Observations are always a dict: low-dim keys as float32, uint8 keys (images) as
they are. A demo's last row is a terminal when its last ``dones`` is 1, else a
timeout; robomimic also sets ``dones`` inside demos (on task success), which must
not split an episode, so the raw flags are kept as ``infos["dones"]`` and the
simulator states as ``infos["states"]``. Without ``next_obs`` the next row stands
in, and at a demo's last row its own observation (as robomimic does).

An array observation (not a dict) is written under the key ``flat``: the key
robomimic's own D4RL conversion (``convert_d4rl.py``) uses. offrl adds the
attribute ``data.attrs["offrl_action_space"]`` (JSON) so action bounds survive
a round trip; robomimic ignores it.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import gymnasium as gym
import h5py
import numpy as np

from offrl.data import validation
from offrl.data.dataset import Dataset
from offrl.data.formats.hdf5util import open_hdf5, read_array
from offrl.errors import DatasetError
from offrl.io import atomic_path, to_jsonable
from offrl.spaces import space_from_json, space_to_json

FLAT_KEY = "flat"
DEMO = re.compile(r"demo_(\d+)")
ACTION_SPACE_ATTR = "offrl_action_space"
OBSERVATION_SPACE_ATTR = "offrl_observation_space"


def looks_like(handle: h5py.File) -> bool:
    data = handle.get("data")
    return isinstance(data, h5py.Group) and any(
        name.startswith("demo_") and isinstance(data.get(name), h5py.Group) for name in data
    )


def demo_names(data: h5py.Group) -> list[str]:
    """The demo groups under ``data``, demo_2 before demo_10 (h5py lists names as strings)."""
    names = [name for name in data if name.startswith("demo_") and isinstance(data.get(name), h5py.Group)]

    def order(name: str) -> tuple[int, int, str]:
        match = DEMO.fullmatch(name)
        return (0, int(match.group(1)), name) if match else (1, 0, name)

    return sorted(names, key=order)


# ------------------------------------------------------------------ reading


@dataclasses.dataclass
class _Column:
    """One array per demo (``obs/robot0_eef_pos``, ``actions``, ...), gathered into one column."""

    key: str
    shape: tuple[int, ...]  # per-row shape
    dtype: np.dtype  # the dtype it is gathered as


def read(path: Path, *, filter_key: str | None = None) -> Dataset:
    """All demos, or those a filter key (``mask/<filter_key>``) names, as one dataset."""
    path = Path(path)
    with open_hdf5(path) as handle:
        data = handle["data"]
        all_demos = demo_names(data)
        masks = _read_masks(handle, set(all_demos), path)
        demos = _select(all_demos, masks, filter_key, path)
        lengths = np.array([_demo_length(data[name], name, path) for name in demos], dtype=np.int64)
        columns = _columns(data, demos, lengths, path)  # every check before the first read
        arrays = {column.key: _gather(data, demos, lengths, column, path) for column in columns}
        env_args = _env_args(data, path)
        action_space = _space_attribute(data, ACTION_SPACE_ATTR, path)
        observation_space = _space_attribute(data, OBSERVATION_SPACE_ATTR, path)
    rows = _Rows(demos, lengths)
    observations, stored_next = _observations(arrays, "obs/"), _observations(arrays, "next_obs/")
    next_observations = stored_next or _derived_next(observations, rows.last)
    if isinstance(observation_space, gym.spaces.Box) and set(observations) == {FLAT_KEY}:
        # offrl wrote an array observation under "flat": read back as the array, with its space's bounds
        observations, next_observations = observations[FLAT_KEY], next_observations[FLAT_KEY]
    elif not (isinstance(observation_space, gym.spaces.Dict) and set(observation_space.spaces) == set(observations)):
        observation_space = None  # written by robomimic (or edited since): the space comes from the arrays
    dones = _flags(arrays["dones"], rows, path)
    position = {name: index for index, name in enumerate(demos)}
    metadata: dict[str, Any] = {
        "env_args": env_args,
        "env_name": env_args.get("env_name", "unknown"),
        "filter_keys": {key: sorted(position[d] for d in names if d in position) for key, names in masks.items()},
        "demos": demos,
    }
    if not stored_next:
        metadata["next_observations"] = "derived"
    try:
        return Dataset(
            observations=observations,
            actions=arrays["actions"],
            rewards=arrays["rewards"],
            next_observations=next_observations,
            terminals=_at_last_rows(dones, rows.last),
            timeouts=_at_last_rows(~dones, rows.last),
            observation_space=observation_space,
            action_space=action_space,
            infos={"dones": dones, **({"states": arrays["states"]} if "states" in arrays else {})},
            metadata=metadata,
            source=str(path),
        )
    except DatasetError as error:
        raise _located(error, arrays, rows, path) from None


class _Rows:
    """Where each demo's rows sit in the gathered columns, to name a demo and its row in errors."""

    def __init__(self, demos: list[str], lengths: np.ndarray) -> None:
        self.demos = demos
        self.starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        self.last = self.starts + lengths - 1

    def locate(self, row: int) -> tuple[str, int]:
        """(demo name, row within the demo) of a row of the gathered columns."""
        demo = int(np.searchsorted(self.starts, row, side="right")) - 1
        return self.demos[demo], row - int(self.starts[demo])


def _at_last_rows(flags: np.ndarray, last: np.ndarray) -> np.ndarray:
    """A demo's episode ends at its last row only: flags elsewhere (robomimic's success ``dones``) are dropped."""
    out = np.zeros(len(flags), dtype=bool)
    out[last] = flags[last]
    return out


def _read_masks(handle: h5py.File, known: set[str], path: Path) -> dict[str, list[str]]:
    """Filter key -> demo names; a mask naming a demo the file lacks is an error."""
    group = handle.get("mask")
    if not isinstance(group, h5py.Group):
        return {}
    masks = {}
    for key in group:
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in np.ravel(read_array(group, key, path))]
        missing = [name for name in names if name not in known]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise DatasetError(path, f"names demos that are not in data/: {shown}", key=f"mask/{key}")
        masks[key] = names
    return masks


def _select(demos: list[str], masks: dict[str, list[str]], filter_key: str | None, path: Path) -> list[str]:
    if filter_key is None:
        selected = demos
    elif filter_key not in masks:
        known = ", ".join(sorted(masks)) or "none"
        raise DatasetError(path, f"no filter key {filter_key!r} in mask/ (known: {known})")
    else:
        chosen = set(masks[filter_key])
        selected = [name for name in demos if name in chosen]
    if not selected:
        where = f"filter key {filter_key!r} names" if filter_key else "data/ holds"
        raise DatasetError(path, f"{where} no demo")
    return selected


def _demo_length(demo: h5py.Group, name: str, path: Path) -> int:
    """Rows of a demo: its ``actions``, checked against ``num_samples``."""
    actions = demo.get("actions")
    if not isinstance(actions, h5py.Dataset):
        raise DatasetError(path, "missing required key", key=f"data/{name}/actions")
    length = int(actions.shape[0]) if actions.shape else 0
    if length == 0:
        raise DatasetError(path, "is empty: a demo needs at least one row", key=f"data/{name}/actions")
    if "num_samples" in demo.attrs and int(demo.attrs["num_samples"]) != length:
        raise DatasetError(
            path, f"num_samples is {int(demo.attrs['num_samples'])} but actions has {length} rows", key=f"data/{name}"
        )
    return length


def _columns(data: h5py.Group, demos: list[str], lengths: np.ndarray, path: Path) -> list[_Column]:
    """The columns every demo must hold, checked (rows, shapes, dtypes) before anything is read."""
    first = data[demos[0]]
    columns = []
    for key in _column_keys(data, demos, path):
        reference = _node(first.get(key), f"data/{demos[0]}/{key}", path)
        for name, length in zip(demos, lengths.tolist()):
            _check_node(data[name].get(key), reference, name, key, length, demos[0], path)
        columns.append(_Column(key, reference.shape[1:], _gathered_dtype(key, reference.dtype)))
    return columns


def _column_keys(data: h5py.Group, demos: list[str], path: Path) -> list[str]:
    """``obs/<key>`` (and ``next_obs/<key>``) for the first demo's keys, which every demo must share;
    ``states`` only when every demo has it with one width."""
    obs_keys = _obs_keys(data[demos[0]], "obs", demos[0], path)
    groups = ["obs", "next_obs"] if isinstance(data[demos[0]].get("next_obs"), h5py.Group) else ["obs"]
    for name in demos:
        for group in groups:
            found = _obs_keys(data[name], group, name, path)
            if found != obs_keys:
                raise DatasetError(path, _key_difference(found, obs_keys, demos[0]), key=f"data/{name}/{group}")
        if "next_obs" not in groups and isinstance(data[name].get("next_obs"), h5py.Group):
            raise DatasetError(path, f"has next_obs but {demos[0]} has none", key=f"data/{name}/next_obs")
    keys = [f"{group}/{key}" for group in groups for key in obs_keys] + ["actions", "rewards", "dones"]
    states = [data[name].get("states") for name in demos]
    if all(isinstance(node, h5py.Dataset) for node in states) and len({node.shape[1:] for node in states}) == 1:
        keys.append("states")
    return keys


def _obs_keys(demo: h5py.Group, group: str, name: str, path: Path) -> list[str]:
    node = demo.get(group)
    if not isinstance(node, h5py.Group):
        hint = ""
        if group == "obs" and "states" in demo:  # robosuite's raw recordings: simulator states, no observations
            hint = " (a raw recording of simulator states: extract observations first with robomimic's dataset_states_to_obs.py)"
        raise DatasetError(path, f"missing required group{hint}", key=f"data/{name}/{group}")
    return sorted(node)


def _key_difference(found: list[str], expected: list[str], reference: str) -> str:
    missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    parts = ([f"lacks {', '.join(missing)}"] if missing else []) + ([f"adds {', '.join(extra)}"] if extra else [])
    return f"observation keys differ from {reference}'s: " + "; ".join(parts)


def _node(node: Any, key: str, path: Path) -> h5py.Dataset:
    if node is None:
        raise DatasetError(path, "missing required key", key=key)
    if not isinstance(node, h5py.Dataset) or not node.shape:
        raise DatasetError(path, "expected an array with one row per step", key=key)
    return node


def _check_node(node: Any, reference: h5py.Dataset, name: str, key: str, length: int, first: str, path: Path) -> None:
    full = f"data/{name}/{key}"
    node = _node(node, full, path)
    if node.shape[0] != length:
        raise DatasetError(path, f"has {node.shape[0]} rows but actions has {length}", key=full)
    if node.shape[1:] != reference.shape[1:]:
        raise DatasetError(path, f"rows of shape {node.shape[1:]}, but {first}'s are {reference.shape[1:]}", key=full)
    if (node.dtype == np.uint8) != (reference.dtype == np.uint8):
        raise DatasetError(path, f"has dtype {node.dtype} but {first}'s is {reference.dtype}", key=full)


def _gathered_dtype(key: str, dtype: np.dtype) -> np.dtype:
    """Images stay uint8 and states float64 (exact simulator resets); other floats become float32."""
    if dtype == np.uint8 or key == "states" or (key in ("actions", "dones") and dtype.kind != "f"):
        return dtype
    if dtype.kind not in "fiub":
        return dtype  # refused by the dataset's dtype check, naming the key
    return np.dtype(np.float32)


def _gather(data: h5py.Group, demos: list[str], lengths: np.ndarray, column: _Column, path: Path) -> np.ndarray:
    """Every demo's rows of one column, read straight into one preallocated array (no per-row Python)."""
    out = np.empty((int(lengths.sum()), *column.shape), dtype=column.dtype)
    start = 0
    for name, length in zip(demos, lengths.tolist()):
        out[start : start + length] = read_array(data[name], column.key, path)
        start += length
    return out


def _observations(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {key[len(prefix) :]: value for key, value in arrays.items() if key.startswith(prefix)}


def _derived_next(observations: dict[str, np.ndarray], last: np.ndarray) -> dict[str, np.ndarray]:
    """Without next_obs: the next row inside a demo, the row itself at a demo's last row."""

    def shifted(array: np.ndarray) -> np.ndarray:
        following = np.empty_like(array)
        following[:-1] = array[1:]
        following[last] = array[last]
        return following

    return {key: shifted(array) for key, array in observations.items()}


def _flags(dones: np.ndarray, rows: _Rows, path: Path) -> np.ndarray:
    """``dones`` as bool; a value other than 0/1 is named by its demo and row."""
    odd = np.flatnonzero(~np.isin(dones.reshape(len(dones), -1), (0, 1)).all(axis=1))
    if len(odd):
        demo, row = rows.locate(int(odd[0]))
        value = dones[odd[0]].tolist()
        raise DatasetError(path, f"flags must be 0 or 1, found {value} at row {row}", key=f"data/{demo}/dones")
    return validation.as_flags(str(path), "dones", dones)


def _env_args(data: h5py.Group, path: Path) -> dict[str, Any]:
    text = data.attrs.get("env_args")
    if text is None:
        return {}
    try:
        env_args = json.loads(text.decode() if isinstance(text, bytes) else str(text))
    except ValueError as error:
        raise DatasetError(path, f"is not valid JSON: {error}", key="data.attrs[env_args]") from None
    if not isinstance(env_args, dict):
        raise DatasetError(path, "expected a JSON object", key="data.attrs[env_args]")
    return env_args


def _space_attribute(data: h5py.Group, attribute: str, path: Path) -> Any:
    """The space offrl stored in ``data.attrs[attribute]`` (None in robomimic's own files)."""
    text = data.attrs.get(attribute)
    if text is None:
        return None
    try:
        return space_from_json(json.loads(text))
    except (ValueError, KeyError, TypeError) as error:
        raise DatasetError(path, f"malformed space description: {error}", key=f"data.attrs[{attribute}]") from None


def _located(error: DatasetError, arrays: dict[str, np.ndarray], rows: _Rows, path: Path) -> DatasetError:
    """Validation counts rows over all demos; say which demo, and which of its rows, holds a NaN or Inf."""
    key = (error.key or "").replace("next_observations/", "next_obs/").replace("observations/", "obs/")
    array = arrays.get(key)
    if array is None or array.dtype.kind != "f":
        return error
    bad = np.flatnonzero(~np.isfinite(array.reshape(len(array), -1)).all(axis=1))
    if not len(bad):
        return error
    demo, row = rows.locate(int(bad[0]))
    problem = re.sub(r" \(first at row \d+\)", "", error.problem)
    return DatasetError(path, f"{problem} (first in {demo}, its row {row})", key=f"data/{demo}/{key}")


# ------------------------------------------------------------------ writing


def write(dataset: Dataset, path: Path, *, env_args: dict[str, Any] | None = None) -> None:
    """One demo per episode (demo_0, demo_1, ...), masks from ``metadata["filter_keys"]``, atomically.

    ``env_args`` (robomimic's environment description) defaults to ``metadata["env_args"]``, else
    names ``metadata["env_name"]`` with robomimic's robosuite type (1).
    """
    path = Path(path)
    columns = _demo_columns(dataset, path)
    filter_keys = _filter_keys(dataset, path)
    starts, stops = dataset.episode_bounds
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        data = handle.create_group("data")
        for index, (start, stop) in enumerate(zip(starts.tolist(), stops.tolist())):
            demo = data.create_group(f"demo_{index}")
            demo.attrs["num_samples"] = stop - start
            for key, array in columns.items():
                demo.create_dataset(key, data=array[start:stop])
        data.attrs["total"] = len(dataset)
        data.attrs["env_args"] = json.dumps(to_jsonable(_env_args_for(dataset, env_args)))
        data.attrs[ACTION_SPACE_ATTR] = json.dumps(space_to_json(dataset.action_space))
        data.attrs[OBSERVATION_SPACE_ATTR] = json.dumps(space_to_json(dataset.observation_space))
        for key, indices in filter_keys.items():
            names = [f"demo_{i}".encode() for i in indices]
            handle.create_dataset(f"mask/{key}", data=np.array(names, dtype="S" if names else "S1"))


def _demo_columns(dataset: Dataset, path: Path) -> dict[str, np.ndarray]:
    """The dataset's columns under the names a demo group gives them."""
    columns = {f"obs/{key}": array for key, array in _as_obs_dict(dataset.observations, path).items()}
    columns.update({f"next_obs/{key}": array for key, array in _as_obs_dict(dataset.next_observations, path).items()})
    columns.update(actions=dataset.actions, rewards=dataset.rewards, dones=_dones(dataset))
    if "states" in dataset.infos:
        columns["states"] = dataset.infos["states"]
    return columns


def _filter_keys(dataset: Dataset, path: Path) -> dict[str, list[int]]:
    """``metadata["filter_keys"]`` checked against the episodes, so no mask names a demo not written."""
    stored = dataset.metadata.get("filter_keys") or {}
    filter_keys = {key: [int(i) for i in indices] for key, indices in stored.items()}
    for key, indices in filter_keys.items():
        outside = [i for i in indices if not 0 <= i < dataset.num_episodes]
        if outside:
            raise DatasetError(
                path, f"filter key {key!r} names episodes {outside[:5]}, but the dataset has {dataset.num_episodes}"
            )
    return filter_keys


def _as_obs_dict(observations: Any, path: Path) -> dict[str, np.ndarray]:
    """Observations by robomimic key: an array goes under ``flat``; keys do not nest."""
    if not isinstance(observations, dict):
        return {FLAT_KEY: observations}
    nested = [key for key, value in observations.items() if isinstance(value, dict)]
    if nested:
        raise DatasetError(path, f"robomimic observation keys are flat; {', '.join(nested)} holds a nested dict")
    return observations


def _dones(dataset: Dataset) -> np.ndarray:
    """robomimic's 0/1 ``dones``: the dataset's own (``infos["dones"]``) inside episodes, and at each
    episode's last row its terminal flag, so a timeout never comes back as a terminal."""
    dones = np.zeros(len(dataset), dtype=np.int64)
    if "dones" in dataset.infos:
        dones[:] = np.asarray(dataset.infos["dones"]).astype(bool).reshape(len(dataset))
    _, stops = dataset.episode_bounds
    dones[stops - 1] = dataset.terminals[stops - 1]
    return dones


def _env_args_for(dataset: Dataset, env_args: dict[str, Any] | None) -> dict[str, Any]:
    if env_args is not None:
        return env_args
    if isinstance(dataset.metadata.get("env_args"), dict) and dataset.metadata["env_args"]:
        return dataset.metadata["env_args"]
    return {"env_name": dataset.metadata.get("env_name") or dataset.metadata.get("env_id") or "unknown", "type": 1, "env_kwargs": {}}


# ------------------------------------------------------------------ describing


def describe(dataset: Dataset) -> dict[str, Any]:
    """What ``offrl datasets info`` adds for a robomimic file: small and JSON-able (no demo list)."""
    observations = _as_obs_dict(dataset.observations, Path(dataset.source))
    return {
        "demos": dataset.num_episodes,
        "env_name": dataset.metadata.get("env_name", "unknown"),
        "obs_keys": {key: {"shape": list(a.shape[1:]), "dtype": str(a.dtype)} for key, a in observations.items()},
        "filter_keys": {key: len(v) for key, v in (dataset.metadata.get("filter_keys") or {}).items()},
    }


def describe_lines(info: dict[str, Any]) -> list[str]:
    """``describe``'s output as ``datasets info`` text lines."""
    width = max(len(key) for key in info["obs_keys"])
    lines = [f"demos        {info['demos']:,}", f"env name     {info['env_name']}"]
    for position, (key, spec) in enumerate(info["obs_keys"].items()):
        label = "obs keys     " if position == 0 else " " * 13
        lines.append(f"{label}{key:<{width}}  {tuple(spec['shape'])} {spec['dtype']}")
    if info["filter_keys"]:
        counts = ", ".join(f"{key} ({n} demo{'' if n == 1 else 's'})" for key, n in info["filter_keys"].items())
        lines.append(f"filter keys  {counts}")
    return lines
