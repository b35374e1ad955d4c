"""offrl's own HDF5 layout, versioned.

    attrs: offrl_format="dataset", format_version, observation_space,
           action_space, metadata (JSON strings)
    observations, next_observations   array, or a group of arrays for dict spaces
    actions, rewards, terminals, timeouts
    infos/<key>
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from offrl.data.dataset import Dataset
from offrl.data.formats.hdf5util import open_hdf5, read_array, read_flat_group, read_tree
from offrl.errors import DatasetError
from offrl.io import atomic_path, to_jsonable
from offrl.spaces import space_from_json, space_to_json

FORMAT_VERSION = 1


def looks_like(handle: h5py.File) -> bool:
    return handle.attrs.get("offrl_format") == "dataset"


def read(path: Path) -> Dataset:
    with open_hdf5(path) as handle:
        version = int(handle.attrs.get("format_version", 0))
        if version > FORMAT_VERSION:
            raise DatasetError(
                path, f"written by a newer offrl (format version {version}); this offrl reads up to {FORMAT_VERSION}"
            )
        try:
            observation_space = space_from_json(json.loads(handle.attrs["observation_space"]))
            action_space = space_from_json(json.loads(handle.attrs["action_space"]))
            metadata = json.loads(handle.attrs.get("metadata", "{}"))
        except (KeyError, ValueError, TypeError) as error:
            raise DatasetError(path, f"header attributes are missing or malformed: {error}") from None
        columns = {
            "observations": read_tree(handle, "observations", path),
            "next_observations": read_tree(handle, "next_observations", path),
            **{key: read_array(handle, key, path) for key in ("actions", "rewards", "terminals", "timeouts")},
        }
        infos = read_flat_group(handle["infos"], path) if isinstance(handle.get("infos"), h5py.Group) else {}
    return Dataset(
        **columns,
        observation_space=observation_space,
        action_space=action_space,
        infos=infos,
        metadata=metadata,
        source=str(path),
    )


def write(dataset: Dataset, path: Path, *, compression: str | None = None) -> None:
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        handle.attrs["offrl_format"] = "dataset"
        handle.attrs["format_version"] = FORMAT_VERSION
        handle.attrs["observation_space"] = json.dumps(space_to_json(dataset.observation_space))
        handle.attrs["action_space"] = json.dumps(space_to_json(dataset.action_space))
        handle.attrs["metadata"] = json.dumps(to_jsonable(dataset.metadata))
        for name in ("observations", "next_observations"):
            _write_tree(handle, name, getattr(dataset, name), compression)
        for name in ("actions", "rewards", "terminals", "timeouts"):
            handle.create_dataset(name, data=getattr(dataset, name), compression=compression)
        if dataset.infos:
            infos = handle.create_group("infos")
            for key, value in dataset.infos.items():
                infos.create_dataset(key, data=np.asarray(value), compression=compression)


def _write_tree(group: h5py.Group, name: str, value: Any, compression: str | None) -> None:
    if isinstance(value, dict):
        sub = group.create_group(name)
        for key, array in value.items():
            _write_tree(sub, key, array, compression)
    else:
        group.create_dataset(name, data=value, compression=compression)
